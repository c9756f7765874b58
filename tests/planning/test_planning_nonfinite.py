"""No non-finite forecast value is ever planned from or served: the fallback (rolling
empirical quantiles) stands in for exactly the series that went bad, and says so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sliceai.planning import (
    EwmaForecaster,
    Forecaster,
    Planner,
    PooledForecaster,
    RollingQuantileForecaster,
)
from sliceai.planning.forecasters import FloatArray, IntArray, guarded_quantiles
from sliceai.policy import load_policy

POLICY = load_policy(Path(__file__).resolve().parents[2] / "policies" / "hospital.yaml")
N = len(POLICY.slices)
LEVELS = np.array([0.1, 0.5, 0.9])


class Poisoned(Forecaster):
    """``scale * level`` everywhere except ``bad`` ``(origin, series, step)`` cells, which
    get ``value`` (NaN, inf...)."""

    name = "poisoned"

    def __init__(self, bad: list[tuple[int, int, int]], value: float = np.nan) -> None:
        self.bad = bad
        self.value = value

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
        q = np.broadcast_to(1e7 * np.asarray(levels), shape).copy()
        for origin, series, step in self.bad:
            k = np.flatnonzero(np.asarray(origins) == origin)
            if len(k) and step < horizon:
                q[k[0], series, step, 1] = self.value
        return q


def _history(t: int = 40) -> FloatArray:
    return np.full((2 * N, t), 3e6)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_a_bad_step_of_one_series_replaces_that_series_only(value: float) -> None:
    forecaster = Poisoned([(20, 3, 2)], value)  # origin 20, series 3, the third step
    q, bad, notes = guarded_quantiles(
        forecaster, RollingQuantileForecaster(), _history(), np.array([10, 20]), LEVELS, 0.0, 1.0, 4
    )
    assert np.isfinite(q).all()
    assert bad.tolist()[0] == [False] * (2 * N)
    assert np.flatnonzero(bad[1]).tolist() == [3]
    np.testing.assert_allclose(q[1, 3], 3e6)  # every step of the series: the history's quantiles
    np.testing.assert_allclose(q[1, 4], np.broadcast_to(1e7 * LEVELS, (4, 3)))
    assert notes[0] == ""
    assert notes[1] == (
        f"poisoned returned non-finite quantiles for 1 of {2 * N} series; rolling-quantile used"
    )


def test_a_bad_step_beyond_the_first_still_counts() -> None:
    """Horizon 1 is clean; only a longer horizon reaches the bad step."""
    forecaster = Poisoned([(40, 0, 5)])
    args = (RollingQuantileForecaster(), _history(), np.array([40]), LEVELS, 0.0, 1.0)
    assert guarded_quantiles(forecaster, *args, 1)[2] == [""]
    q, bad, notes = guarded_quantiles(forecaster, *args, 8)
    assert bad[0, 0]
    assert not bad[0, 1:].any()
    assert np.isfinite(q).all()
    assert "non-finite" in notes[0]


def test_a_pool_recovering_from_a_nan_member_is_flagged() -> None:
    pool = PooledForecaster([Poisoned([(40, 2, 1)]), EwmaForecaster(), RollingQuantileForecaster()])
    q, bad, notes = guarded_quantiles(
        pool, RollingQuantileForecaster(), _history(), np.array([40]), LEVELS, 0.0, 1.0, 3
    )
    assert np.isfinite(q).all()
    assert not bad.any()  # the pool gave finite values from its other members...
    assert (
        "poisoned returned non-finite quantiles; pooled from the others" in notes[0]
    )  # ...flagged


def test_the_planner_plans_from_the_fallback_where_the_forecaster_gave_nan() -> None:
    planner = Planner(POLICY, Poisoned([(20, 1, 0), (20, 6, 0)]))
    out = planner.forecast(_history(), np.array([10, 20, 30]), 0.0, 1.0)
    assert [f.fallback for f in out] == [False, True, False]
    assert "for 2 of" in out[1].note
    assert out[1].source == "poisoned"  # most series are still the forecaster's
    np.testing.assert_allclose(out[1].quantiles[0, 1], 3e6)  # slice 0 UL: series 1
    np.testing.assert_allclose(out[1].quantiles[3, 0], 3e6)  # slice 3 DL: series 6
    np.testing.assert_allclose(out[1].quantiles[0, 0], 1e7 * planner.levels)
    step = planner.step(out[1])
    assert step.mode == "model-fallback"
    assert np.isfinite(step.rates_bps).all()


def test_a_forecaster_that_raises_is_replaced_everywhere() -> None:
    class Raises(Forecaster):
        name = "raises"

        def quantiles_at(self, *args: object, **kw: object) -> FloatArray:
            raise RuntimeError("device lost")

    q, bad, notes = guarded_quantiles(
        Raises(), RollingQuantileForecaster(), _history(), np.array([5, 6]), LEVELS, 0.0, 1.0, 2
    )
    assert bad.all()
    np.testing.assert_allclose(q, 3e6)
    assert notes == ["raises failed (RuntimeError: device lost); rolling-quantile used"] * 2
