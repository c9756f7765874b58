"""GetForecast never serves a non-finite value as normal: with a model that emits NaN
at some steps of some series, those series come from the fallback, flagged."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from sliceai.api.client import SliceaiClient
from sliceai.planning import EwmaForecaster, Forecaster, PooledForecaster, RollingQuantileForecaster
from sliceai.planning.forecasters import FloatArray, IntArray


class NanFromStep2(Forecaster):
    """Finite at the first step; NaN at later steps of the first series (slice 0, DL)."""

    name = "nan-model"

    def quantiles_at(
        self,
        history: FloatArray,
        origins: IntArray,
        levels: FloatArray,
        start_time: float,
        interval_s: float,
        horizon: int = 1,
    ) -> FloatArray:
        shape = (len(origins), history.shape[0], horizon, len(levels))
        q = np.broadcast_to(7e6 * np.asarray(levels), shape).copy()
        q[:, 0, 1:, :] = np.nan
        return q


@pytest.mark.parametrize("pooled", [False, True])
def test_nan_at_a_later_step_is_replaced_and_flagged(
    start_server: Callable[..., Any], pooled: bool
) -> None:
    model: Forecaster = NanFromStep2()
    if pooled:
        model = PooledForecaster([model, EwmaForecaster(), RollingQuantileForecaster()])
    running = start_server(forecaster=model)
    with SliceaiClient(running.target) as c:
        first = running.engine.policy.slice_names[0]
        one = c.forecast([first], 1, [0.5])
        assert not one.fallback  # horizon 1 never reaches the bad step
        resp = c.forecast([], 4, [0.1, 0.5, 0.9])
    assert resp.fallback
    values = [v for s in resp.slices for v in (*s.dl_bps, *s.ul_bps)]
    assert len(values) == len(resp.slices) * 2 * 4 * 3
    assert all(math.isfinite(v) and v >= 0 for v in values)
    if not pooled:  # only slice 0's DL was replaced; the rest is the model's own
        assert list(resp.slices[1].dl_bps) == pytest.approx([7e5, 3.5e6, 6.3e6] * 4)
        assert list(resp.slices[0].ul_bps) == pytest.approx([7e5, 3.5e6, 6.3e6] * 4)
        assert list(resp.slices[0].dl_bps) != pytest.approx([7e5, 3.5e6, 6.3e6] * 4)
