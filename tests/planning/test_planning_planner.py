"""The planner's own rules: which forecast it plans from, what it cuts, how it falls back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sliceai.planning import Forecaster, Planner, PlannerSettings, planning_levels
from sliceai.planning.forecasters import FloatArray, IntArray
from sliceai.policy import load_policy

POLICY = load_policy(Path(__file__).resolve().parents[2] / "policies" / "hospital.yaml")
N = len(POLICY.slices)


class Fixed(Forecaster):
    """Every quantile at level q is ``scale * q``; origins listed in ``nan_at`` get NaN."""

    name = "fixed"

    def __init__(self, scale: float = 1e7, nan_at: tuple[int, ...] = ()) -> None:
        self.scale = scale
        self.nan_at = nan_at

    def quantiles_at(
        self,
        history: FloatArray,
        origins: IntArray,
        levels: FloatArray,
        start_time: float,
        interval_s: float,
        horizon: int = 1,
    ) -> FloatArray:
        q = np.broadcast_to(
            self.scale * np.asarray(levels), (len(origins), history.shape[0], horizon, len(levels))
        ).copy()
        q[np.isin(origins, self.nan_at)] = np.nan
        return q


def _history(t: int = 40) -> np.ndarray:
    return np.full((2 * N, t), 3e6)


def test_levels_are_the_grid_plus_every_slices_1_minus_risk() -> None:
    levels = planning_levels(POLICY, (0.5, 0.9))
    assert set(np.round(1 - np.array([s.risk for s in POLICY.slices]), 9)) <= set(levels)
    assert {0.5, 0.9} <= set(levels)
    assert (np.diff(levels) > 0).all()


def test_only_the_origins_whose_forecast_is_bad_fall_back() -> None:
    planner = Planner(POLICY, Fixed(nan_at=(20,)))
    out = planner.forecast(_history(), np.array([10, 20, 30]), 0.0, 1.0)
    assert [f.fallback for f in out] == [False, True, False]
    assert out[1].source == "rolling-quantile"
    assert "fixed returned non-finite quantiles" in out[1].note
    np.testing.assert_allclose(out[1].quantiles, 3e6)  # the history's empirical quantiles
    np.testing.assert_allclose(out[0].quantiles[0, 0], 1e7 * planner.levels)


def test_a_forecaster_of_the_wrong_shape_is_replaced() -> None:
    class Wrong(Fixed):
        def quantiles_at(self, history, origins, *args, **kw):  # type: ignore[no-untyped-def]
            return super().quantiles_at(history[:1], origins, *args, **kw)

    out = Planner(POLICY, Wrong()).forecast(_history(), np.array([5]), 0.0, 1.0)
    assert out[0].fallback
    assert "shape" in out[0].note


def test_the_target_is_each_slices_1_minus_risk_quantile() -> None:
    planner = Planner(POLICY, Fixed(1e6))
    step = planner.step(planner.forecast(_history(), np.array([40]), 0.0, 1.0)[0])
    expected = 1e6 * (1 - np.array([s.risk for s in POLICY.slices]))
    np.testing.assert_allclose(step.target_bps[:, 0], expected)
    assert step.mode == "optimized"
    assert step.plan is not None
    assert "guarantee" in step.explanations[0]


@pytest.mark.parametrize(
    ("kw", "message"),
    [({"last_plan_limit": -1}, "last_plan_limit"), ({"solve_deadline_s": 0.0}, "deadline")],
)
def test_bad_settings_are_refused(kw, message) -> None:
    with pytest.raises(ValueError, match=message):
        PlannerSettings(**kw)


def test_the_risk_settings_reach_the_control() -> None:
    both = Planner(POLICY, Fixed(), PlannerSettings(risk_gain=0.25))
    assert both.risk is not None
    np.testing.assert_allclose(both.risk.gamma, 0.25 * both.risk.alpha)
    assert (both.risk.a_max > both.risk.alpha).all()
    up = Planner(POLICY, Fixed(), PlannerSettings(risk_lowers=False))
    assert up.risk is not None
    np.testing.assert_allclose(up.risk.a_max, up.risk.alpha)
    assert Planner(POLICY, Fixed(), PlannerSettings(risk_control=False)).risk is None
