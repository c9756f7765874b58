"""Robust input: NaN, missing intervals, all-zero slices, short history, kbit/s to 10 Gbit/s."""

from __future__ import annotations

import numpy as np
import pytest

from sliceai.forecast import ForecastPipeline
from sliceai.forecast.features import SCALE_FLOOR_BPS


def test_nan_and_inf_context(tiny_pipeline: ForecastPipeline) -> None:
    ctx = np.full((2, 32), 1e6)
    ctx[0, ::3] = np.nan
    ctx[1, 5] = np.inf
    ctx[1, 6] = -4.0
    out = tiny_pipeline.sample(ctx, 4, 8, seed=0)
    assert np.all(np.isfinite(out))


def test_all_missing_and_empty_history(tiny_pipeline: ForecastPipeline) -> None:
    out = tiny_pipeline.quantiles(np.full((1, 32), np.nan), 4, (0.5, 0.99))
    assert np.all(np.isfinite(out))
    assert out.max() < 1e3 * SCALE_FLOOR_BPS
    empty = tiny_pipeline.sample(np.zeros((2, 0)), 3, 5, seed=0)
    assert empty.shape == (2, 5, 3)


def test_all_zero_slice_stays_near_zero(tiny_pipeline: ForecastPipeline) -> None:
    q = tiny_pipeline.quantiles(np.zeros((1, 32)), 4, (0.5, 0.999))
    # Relative to the 1 bit/s floor scale: nothing like a real rate.
    assert q.max() < 1e3


@pytest.mark.parametrize("length", [1, 3, 7])
def test_short_history(tiny_pipeline: ForecastPipeline, length: int) -> None:
    ctx = np.full((3, length), 2e6)
    q = tiny_pipeline.quantiles(ctx, 4, (0.1, 0.5, 0.9), start_time=1.7e9)
    assert np.all(np.isfinite(q))
    assert np.all(q[..., 1] > 1e4)


@pytest.mark.parametrize("level", [1e3, 1e6, 1e8, 1e10])
def test_rate_range_scales_with_the_input(tiny_pipeline: ForecastPipeline, level: float) -> None:
    rng = np.random.default_rng(0)
    ctx = level * rng.lognormal(0.0, 0.2, size=(4, 32))
    med = tiny_pipeline.quantiles(ctx, 4, (0.5,))[..., 0]
    assert np.all(np.isfinite(med))
    # An untrained model still produces forecasts in the input's order of magnitude.
    assert np.all(med > level * 1e-3)
    assert np.all(med < level * 1e3)


@pytest.mark.parametrize("level", [1e3, 1e6, 1e9, 3e10])
def test_bundled_model_tracks_any_rate(level: float) -> None:
    pipe = ForecastPipeline.load(device="cpu")
    rng = np.random.default_rng(1)
    ctx = level * rng.lognormal(0.0, 0.1, size=(3, 256))
    ctx[0, ::7] = np.nan  # missing intervals
    q = pipe.quantiles(ctx, 8, (0.025, 0.5, 0.975), start_time=1.767e9, interval_s=60.0)
    assert np.all(np.abs(q[..., 1] / level - 1.0) < 0.25)
    assert np.all(q[..., 0] < level * 1.1)
    assert np.all(q[..., 2] > level * 0.9)


def test_bundled_model_new_slice_and_idle_slice() -> None:
    pipe = ForecastPipeline.load(device="cpu")
    few = np.full((1, 4), 5e6)
    q = pipe.quantiles(few, 4, (0.5,), start_time=1.767e9, interval_s=10.0)
    assert np.all((q > 1e6) & (q < 2.5e7))
    idle = pipe.quantiles(np.zeros((1, 256)), 4, (0.5, 0.99), start_time=1.767e9, interval_s=10.0)
    assert np.all(idle[..., 0] < 10.0)
