"""The simple forecasters: what they compute, that they read only the past, and that
many origins at once give what one origin at a time gives."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import ndtri

from sliceai.planning import EwmaForecaster, RollingQuantileForecaster, SeasonalNaiveForecaster
from sliceai.planning.forecasters import trailing_windows

LEVELS = np.array([0.05, 0.5, 0.9, 0.999])
ALL = [RollingQuantileForecaster(window=30), EwmaForecaster(window=40), SeasonalNaiveForecaster(5)]


def _history(n: int = 3, t: int = 400, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.lognormal(13, 0.5, (n, t))
    x[1, 100:130] = np.nan
    x[2, :50] = np.nan
    return x


@pytest.mark.parametrize("forecaster", ALL, ids=lambda f: f.name)
def test_a_forecast_reads_only_the_intervals_before_its_origin(forecaster) -> None:
    x = _history()
    origins = np.array([1, 60, 200, 399])
    q = forecaster.quantiles_at(x, origins, LEVELS, 0.0, 3600.0, horizon=3)
    assert q.shape == (4, 3, 3, len(LEVELS))
    assert np.isfinite(q).all()
    assert (q >= 0).all()
    assert (np.diff(q, axis=-1) >= 0).all()
    changed = x.copy()
    changed[:, 200:] *= 7.0
    later = forecaster.quantiles_at(changed, origins, LEVELS, 0.0, 3600.0, horizon=3)
    np.testing.assert_array_equal(later[:3], q[:3])  # origins <= 200 read nothing at >= 200
    assert not np.array_equal(later[3], q[3])
    for k, o in enumerate(origins):  # one origin at a time: the same forecast
        np.testing.assert_allclose(
            forecaster.quantiles(x[:, :o], LEVELS, 0.0, 3600.0, horizon=3), q[k], rtol=1e-12
        )


@settings(max_examples=30, deadline=None)
@given(
    data=st.lists(
        st.lists(st.one_of(st.none(), st.floats(0, 1e10)), min_size=1, max_size=40),
        min_size=1,
        max_size=6,
    ),
    levels=st.lists(st.floats(0.001, 0.999), min_size=1, max_size=6, unique=True),
)
def test_rolling_quantiles_are_numpys_nanquantile_of_the_window(data, levels) -> None:
    width = max(len(r) for r in data)
    rows = np.full((len(data), width), np.nan)
    for i, r in enumerate(data):
        rows[i, : len(r)] = [np.nan if v is None else v for v in r]
    q = np.array(sorted(levels))
    window = max(1, width // 2)
    got = RollingQuantileForecaster(window).quantiles(rows, q, 0.0, 1.0)[:, 0]
    recent = rows[:, -window:]
    some = ~np.isnan(recent).all(axis=1)
    want = np.zeros_like(got)  # a window with nothing observed forecasts 0
    if some.any():
        want[some] = np.nanquantile(recent[some], q, axis=1).T
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-6)


def test_ewma_is_the_documented_recursion_over_its_window() -> None:
    x = np.random.default_rng(3).lognormal(0, 0.4, 60) * 1e6
    f = EwmaForecaster(alpha=0.2, window=25)
    mean, var = x[35], 0.0  # the window of origin 60 starts at 35
    for v in x[35:60]:
        err = v - mean
        mean, var = mean + 0.2 * err, 0.8 * (var + 0.2 * err * err)
    q = f.quantiles(x[None], LEVELS, 0.0, 1.0)[0, 0]
    np.testing.assert_allclose(q, np.maximum(mean + np.sqrt(var) * ndtri(LEVELS), 0), rtol=1e-9)


def test_seasonal_naive_follows_yesterday_once_a_day_is_known() -> None:
    interval = 3600.0
    day = np.array([1.0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12] * 2) * 1e6
    x = np.tile(day, 5)[None]  # 5 "days" of 24 hourly values with a 12-hour shape
    f = SeasonalNaiveForecaster(window=30)
    q = f.quantiles(x[:, :100], np.array([0.5]), 0.0, interval, horizon=24)[0, :, 0]
    np.testing.assert_allclose(q, x[0, 100 - 24 : 100])  # yesterday exactly: no differences
    assert f.period(interval, 100) == 24
    assert f.period(interval, 40) == 1


def test_trailing_windows_pad_what_the_history_does_not_reach() -> None:
    x = np.arange(10.0)[None]
    w = trailing_windows(x, np.array([0, 3, 10]), 4)
    assert np.isnan(w[0]).all()
    np.testing.assert_array_equal(w[1, 0, 1:], [0, 1, 2])
    np.testing.assert_array_equal(w[2, 0], [6, 7, 8, 9])
    with pytest.raises(ValueError, match="origins"):
        trailing_windows(x, np.array([11]), 4)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: RollingQuantileForecaster(0), "window"),
        (lambda: EwmaForecaster(alpha=0), "alpha"),
        (lambda: EwmaForecaster(window=0), "window"),
        (lambda: SeasonalNaiveForecaster(0), "window"),
    ],
)
def test_bad_settings_are_refused(make, message) -> None:
    with pytest.raises(ValueError, match=message):
        make()
