"""The seasonal window: yesterday's history around the origin goes into the model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from forecast_configs import SMALL, train_options

from sliceai.forecast import ForecastError, ForecastPipeline
from sliceai.forecast.features import prepare, seasonal_slice
from sliceai.forecast.model import ForecastModel
from sliceai.forecast.training.data import Series, sample_windows
from sliceai.forecast.training.train import train

HOUR = 3600.0  # one day = 24 intervals
SEASONAL = dataclasses.replace(SMALL, context_length=16, seasonal_window=8)


def test_seasonal_slice_is_one_day_before_the_origin() -> None:
    context = np.arange(30.0)[None, :]  # origin = interval 30
    got = seasonal_slice(context, HOUR, 8)
    # Columns: intervals 30 - 24 - 4 .. 30 - 24 + 3 = 2 .. 9.
    np.testing.assert_array_equal(got[0], np.arange(2.0, 10.0))
    short = seasonal_slice(context[:, 3:], HOUR, 8)  # intervals 3..29: 2 is not there
    assert np.isnan(short[0, 0])
    np.testing.assert_array_equal(short[0, 1:], np.arange(3.0, 10.0))
    assert np.all(np.isnan(seasonal_slice(context[:, :20], HOUR, 8)))


def test_seasonal_slice_never_reaches_the_origin() -> None:
    # A day of 2 intervals with a window of 8: the window's second half is the future.
    got = seasonal_slice(np.arange(10.0)[None, :], 43200.0, 8)
    np.testing.assert_array_equal(got[0, :6], np.arange(4.0, 10.0))
    assert np.all(np.isnan(got[0, 6:]))


def test_history_length_covers_a_day_and_half_the_window() -> None:
    assert SEASONAL.history_length(HOUR) == 24 + 4
    assert SEASONAL.history_length(60.0) == 1440 + 4
    assert SEASONAL.history_length(86400.0) == 16  # the context reaches further back
    plain = dataclasses.replace(SEASONAL, seasonal_window=0)
    assert plain.history_length(60.0) == 16


@pytest.mark.parametrize("window", [-2, 3, 6])
def test_bad_seasonal_window_is_rejected(window: int) -> None:
    with pytest.raises(ForecastError, match="seasonal_window"):
        dataclasses.replace(SEASONAL, seasonal_window=window)


def test_scale_includes_the_seasonal_window() -> None:
    context = np.zeros((1, 28))
    context[0, :8] = 8e6  # busy yesterday around this time, idle today
    prep = prepare(context, 16, 4, HOUR, None, seasonal_window=8)
    assert prep.scale[0] == pytest.approx(8e6 * 8 / (16 + 8))
    np.testing.assert_array_equal(prep.seasonal_mask[0], np.ones(8))
    assert np.all(prep.values == 0.0)
    assert np.all(prep.seasonal > 0.0)


def test_forecast_depends_on_yesterday() -> None:
    torch.manual_seed(0)
    pipe = ForecastPipeline(ForecastModel(SEASONAL).eval(), device="cpu")
    rng = np.random.default_rng(0)
    history = rng.lognormal(np.log(1e6), 0.3, size=(2, 40))
    changed = history.copy()
    changed[:, 40 - 24 - 4 : 40 - 24 + 4] *= 10.0  # only yesterday's window
    too_old = history.copy()
    too_old[:, : 40 - 24 - 4] *= 10.0  # before anything the model reads
    q = pipe.quantiles(history, 4, (0.1, 0.5, 0.9), interval_s=HOUR)
    assert not np.allclose(pipe.quantiles(changed, 4, (0.1, 0.5, 0.9), interval_s=HOUR), q)
    np.testing.assert_allclose(pipe.quantiles(too_old, 4, (0.1, 0.5, 0.9), interval_s=HOUR), q)
    # Beyond max_horizon the block chain keeps a day of history for every path.
    paths = pipe.sample(history, 11, 5, interval_s=HOUR, seed=1)
    assert paths.shape == (2, 5, 11)
    assert np.all(np.isfinite(paths))


def test_validation_part_keeps_history_but_targets_after_the_cut() -> None:
    series = Series("s", np.arange(100.0), 0.0, HOUR)
    head, tail = series.split(0.8, history=30)
    assert len(head.values) == 80
    assert tail.values[0] == 50.0
    assert tail.start == 50 * HOUR
    assert tail.first_target == 30
    w = sample_windows(
        [tail], 64, 16, 4, np.random.default_rng(0), augment=False, seasonal_window=8
    )
    assert np.all(w.target[:, 0] >= 80.0)
    assert w.seasonal is not None
    # Seasonal column k of a window with origin o holds the value at o - 24 - 4 + k.
    origin = w.target[:, :1]
    np.testing.assert_array_equal(w.seasonal, origin - 28.0 + np.arange(8.0))


def _daily_pattern_series(n_series: int, days: int, seed: int) -> list[Series]:
    """Each series repeats its own random 24-hour pattern with 10% noise."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n_series):
        pattern = 1e6 * rng.lognormal(0.0, 1.0, size=24)
        noise = rng.lognormal(0.0, 0.1, size=24 * days)
        out.append(Series(f"s{k}", np.tile(pattern, days) * noise, 1.7e9, HOUR))
    return out


def test_seasonal_window_learns_what_the_context_cannot_see(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    tr, va = _daily_pattern_series(32, 20, 0), _daily_pattern_series(8, 6, 1)
    opts = train_options(4, patience=10)
    with_lag = train(tr, va, tmp_path / "lag", SEASONAL, opts)
    plain = dataclasses.replace(SEASONAL, seasonal_window=0)
    without = train(tr, va, tmp_path / "plain", plain, opts)
    # The 16-hour context never shows the same hour of the day; yesterday does.
    assert with_lag.best_val_crps < 0.7 * without.best_val_crps


FAST_CLOCK = dataclasses.replace(SEASONAL, seasonal_min_interval_s=HOUR)
HALF_HOUR = HOUR / 2  # one day = 48 intervals


def test_clocks_below_the_seasonal_minimum_read_the_context_only() -> None:
    assert FAST_CLOCK.seasonal_at(HOUR)
    assert not FAST_CLOCK.seasonal_at(HALF_HOUR)
    assert FAST_CLOCK.history_length(HOUR) == 24 + 4
    assert FAST_CLOCK.history_length(HALF_HOUR) == 16
    assert SEASONAL.history_length(HALF_HOUR) == 48 + 4
    torch.manual_seed(0)
    model = ForecastModel(FAST_CLOCK).eval()
    same = ForecastModel(SEASONAL).eval()  # the same weights, no minimum
    same.load_state_dict(model.state_dict())
    fast, every = (ForecastPipeline(m, device="cpu") for m in (model, same))
    rng = np.random.default_rng(0)
    history = rng.lognormal(np.log(1e6), 0.3, size=(2, 60))
    changed = history.copy()
    changed[:, 60 - 48 - 4 : 60 - 48 + 4] *= 10.0  # only yesterday's window
    levels = (0.1, 0.5, 0.9)
    kw = {"interval_s": HALF_HOUR, "start_time": 1.7e9}
    q = fast.quantiles(history, 4, levels, **kw)
    # Yesterday is ignored however long the history, and the forecast is the one of a
    # model given no yesterday at all (the same start: the context's first interval).
    np.testing.assert_array_equal(fast.quantiles(changed, 4, levels, **kw), q)
    later = {**kw, "start_time": 1.7e9 + 44 * HALF_HOUR}
    np.testing.assert_allclose(every.quantiles(history[:, -16:], 4, levels, **later), q)
    assert not np.allclose(every.quantiles(changed, 4, levels, **kw), q)


def test_training_windows_below_the_seasonal_minimum_have_no_yesterday() -> None:
    hourly = Series("h", np.arange(100.0), 0.0, HOUR)
    slow = Series("d", np.arange(100.0), 0.0, 2 * HOUR)
    kw = {"augment": False, "seasonal_window": 8, "seasonal_min_interval_s": 2 * HOUR}
    w = sample_windows([hourly, slow], 256, 16, 4, np.random.default_rng(0), **kw)
    assert w.seasonal is not None
    fast_rows = w.interval_s == HOUR
    assert 0 < fast_rows.sum() < 256
    assert np.all(np.isnan(w.seasonal[fast_rows]))
    assert np.isfinite(w.seasonal[~fast_rows]).any()
    # The same windows as without the minimum (it draws nothing from the generator).
    again = sample_windows(
        [hourly, slow], 256, 16, 4, np.random.default_rng(0), augment=False, seasonal_window=8
    )
    np.testing.assert_array_equal(again.target, w.target)
    assert np.isfinite(again.seasonal[fast_rows]).any()  # type: ignore[index]


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), True, "30"])
def test_bad_seasonal_minimum_is_rejected(bad: object) -> None:
    with pytest.raises(ForecastError, match="seasonal_min_interval_s"):
        dataclasses.replace(SEASONAL, seasonal_min_interval_s=bad)  # type: ignore[arg-type]
