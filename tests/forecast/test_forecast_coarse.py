"""The coarse view: a longer history than the context, in bins, goes into the model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from forecast_configs import SMALL, train_options

from sliceai.forecast import ForecastError, ForecastPipeline
from sliceai.forecast.config import ForecastConfig
from sliceai.forecast.data import synthetic_series
from sliceai.forecast.features import coarse_view, prepare
from sliceai.forecast.model import N_COARSE, ForecastModel
from sliceai.forecast.pipeline import save_model
from sliceai.forecast.train import train

# Context 16 intervals; the coarse view 6 bins of 8 = the last 48 intervals.
COARSE = dataclasses.replace(SMALL, context_length=16, coarse_bins=6, coarse_bin=8)


def test_coarse_view_is_mean_min_max_and_observed_per_bin() -> None:
    context = np.array([[np.nan, 4.0, 0.0, 8.0, 2.0, 2.0, np.nan, np.nan]])
    scale = np.array([2.0])
    got = coarse_view(context, scale, bins=3, width=2)  # the last 6: 0 8 | 2 2 | - -
    log = lambda x: np.log1p(np.asarray(x) / 2.0)  # noqa: E731
    np.testing.assert_allclose(got[0, 0:3], log([4.0, 2.0, 0.0]), rtol=1e-12)  # means
    np.testing.assert_allclose(got[0, 3:6], log([0.0, 2.0, 0.0]), rtol=1e-12)  # minima
    np.testing.assert_allclose(got[0, 6:9], log([8.0, 2.0, 0.0]), rtol=1e-12)  # maxima
    np.testing.assert_array_equal(got[0, 9:], [1.0, 1.0, 0.0])
    # Shorter than the view: left-padded as not observed.
    short = coarse_view(context[:, -3:], scale, bins=3, width=2)
    np.testing.assert_array_equal(short[0, 9:], [0.0, 1.0, 0.0])


def test_history_and_training_windows_reach_the_coarse_span() -> None:
    assert COARSE.window_length == 48
    assert COARSE.history_length(60.0) == 48
    seasonal = dataclasses.replace(COARSE, seasonal_window=8)
    assert seasonal.history_length(3600.0) == 48  # a day of 24 + 4 is shorter
    assert dataclasses.replace(SMALL, coarse_bins=0).window_length == SMALL.context_length
    with pytest.raises(ForecastError, match="coarse_bins"):
        ForecastConfig(coarse_bins=-1)


def test_prepare_gives_the_model_the_coarse_view() -> None:
    ctx = np.abs(np.random.default_rng(0).normal(1e6, 1e5, size=(3, 60)))
    prep = prepare(ctx, 16, 4, 60.0, None, coarse_bins=6, coarse_bin=8)
    assert prep.coarse.shape == (3, N_COARSE * 6)
    assert prep.model_inputs()[-1] is prep.coarse
    assert prepare(ctx, 16, 4, 60.0, None).coarse.shape == (3, 0)


def test_forecast_depends_on_history_in_the_coarse_span_only() -> None:
    torch.manual_seed(0)
    pipe = ForecastPipeline(ForecastModel(COARSE).eval(), device="cpu")
    history = np.random.default_rng(0).lognormal(np.log(1e6), 0.3, size=(2, 60))
    older = history.copy()
    older[:, 60 - 48 : 60 - 16] *= 10.0  # before the context, inside the coarse view
    too_old = history.copy()
    too_old[:, : 60 - 48] *= 10.0
    levels = (0.1, 0.5, 0.9)
    q = pipe.quantiles(history, 4, levels, interval_s=60.0)
    assert not np.allclose(pipe.quantiles(older, 4, levels, interval_s=60.0), q)
    np.testing.assert_allclose(pipe.quantiles(too_old, 4, levels, interval_s=60.0), q)
    paths = pipe.sample(history, 11, 5, interval_s=60.0, seed=1)  # block chain
    assert paths.shape == (2, 5, 11)
    assert np.all(np.isfinite(paths))


def test_model_rejects_a_coarse_view_of_another_width() -> None:
    model = ForecastModel(COARSE).eval()
    prep = prepare(np.ones((1, 60)), 16, 4, 60.0, None, coarse_bins=5, coarse_bin=8)
    inputs = [torch.from_numpy(a) for a in prep.model_inputs()]
    with pytest.raises(ValueError, match="coarse"):
        model(*inputs)


def test_coarse_model_trains_and_round_trips(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    series = synthetic_series(4, 1500, seed=2)
    tr = [s.split(0.8)[0] for s in series]
    va = [s.split(0.8, history=COARSE.window_length)[1] for s in series]
    result = train(tr, va, tmp_path / "m", COARSE, train_options(1))
    assert np.isfinite(result.best_val_crps)
    pipe = ForecastPipeline.load(tmp_path / "m", device="cpu")
    assert pipe.config.coarse_bins == 6
    ctx = np.stack([s.values[-60:] for s in series[:2]])
    assert pipe.quantiles(ctx, 4, (0.5,), interval_s=60.0).shape == (2, 4, 1)


def test_checkpoint_without_coarse_fields_loads_as_before(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ForecastModel(SMALL).eval()
    save_model(model, tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    for key in ("coarse_bins", "coarse_bin"):
        raw.pop(key)
    (tmp_path / "config.json").write_text(json.dumps(raw))
    pipe = ForecastPipeline.load(tmp_path, device="cpu")
    assert pipe.config.coarse_bins == 0
    ctx = np.full((1, 40), 1e6)
    want = ForecastPipeline(model, device="cpu").quantiles(ctx, 4, (0.5,), interval_s=60.0)
    np.testing.assert_array_equal(pipe.quantiles(ctx, 4, (0.5,), interval_s=60.0), want)
