"""Online risk control: the guarantee on any sequence, what it does to a plan, its state."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sliceai.planning import Forecaster, Planner, PlannerSettings, RiskControl
from sliceai.planning.forecasters import FloatArray, IntArray
from sliceai.planning.risk import GAIN, WINDOW
from sliceai.policy import load_policy

POLICY = load_policy(Path(__file__).resolve().parents[2] / "policies" / "hospital.yaml")
RISKS = [s.risk for s in POLICY.slices]


def _bound(alpha: np.ndarray, counted: np.ndarray) -> np.ndarray:
    """The docstring's guarantee: alpha + (1 + GAIN) / (GAIN * T)."""
    return alpha + (1 + GAIN) / (GAIN * np.maximum(counted, 1))


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    threshold=st.floats(0.5, 1.0),
    spite=st.floats(0.0, 1.0),
    n=st.integers(1, 3000),
    lowers=st.booleans(),
)
def test_no_adversary_pushes_the_miss_rate_past_the_bound(
    seed, threshold, spite, n, lowers
) -> None:
    # The adversary sees the level and makes the interval a miss whenever the level is
    # below its threshold (and, at random, some of the time anyway) - but it cannot make an
    # interval planned at level 1 (all the policy allows) a miss.
    rng = np.random.default_rng(seed)
    control = RiskControl(POLICY.slice_names, RISKS, lowers=lowers)
    for _ in range(n):
        level = control.levels()
        miss = (level < threshold) | (rng.random(level.shape) < spite)
        miss &= level < 1.0
        counts = rng.random(level.shape) < 0.9  # some directions are not servable
        control.update(miss, counts)
    rate = control.misses / np.maximum(control.counted, 1)
    assert np.all(rate <= _bound(control.alpha, control.counted) + 1e-12)
    assert control.counted.sum() > 0


def test_quiet_intervals_bring_the_level_back_to_the_risk_and_no_lower() -> None:
    control = RiskControl(["a"], [0.01], lowers=False)
    control.update(np.array([[True, False]]), np.array([[True, True]]))
    assert (control.levels() > 0.99).all()  # a miss in one direction raises both
    for _ in range(5000):
        control.update(np.zeros((1, 2), bool), np.ones((1, 2), bool))
    np.testing.assert_allclose(control.levels(), 0.99)
    both = RiskControl(["a"], [0.01])  # the default: lowers
    for _ in range(5000):
        both.update(np.zeros((1, 2), bool), np.ones((1, 2), bool))
    assert (both.levels() < 0.9).all()  # allowed to go below 1 - risk, to the median at most


def test_a_miss_in_a_direction_that_does_not_count_is_no_miss() -> None:
    control = RiskControl(["a"], [0.01])
    control.update(np.array([[True, False]]), np.array([[False, True]]))
    assert control.misses.tolist() == [0]
    assert control.counted.tolist() == [1]
    control.update(np.array([[True, True]]), np.array([[False, False]]))
    assert control.counted.tolist() == [1]  # nothing counted: nothing changes


def test_the_explanation_says_how_far_the_level_moved_and_why() -> None:
    control = RiskControl(["consults"], [0.01])
    for t in range(400):  # a miss every 50 intervals: twice the risk
        control.update(np.array([[t % 50 == 0, False]]), np.ones((1, 2), bool))
    text = control.explain(0)
    assert text.startswith("level raised to ")
    assert f"after 6 misses in the last {WINDOW} intervals" in text
    assert RiskControl(["b"], [0.01]).explain(0) == ""  # untouched: nothing to say


def test_state_survives_a_round_trip_and_bad_state_changes_nothing() -> None:
    control = RiskControl(POLICY.slice_names, RISKS)
    rng = np.random.default_rng(1)
    for _ in range(200):
        control.update(rng.random((5, 2)) < 0.05, np.ones((5, 2), bool))
    fresh = RiskControl(POLICY.slice_names, RISKS)
    fresh.restore(control.state())
    np.testing.assert_array_equal(fresh.levels(), control.levels())
    assert fresh.explain(1) == control.explain(1)
    before = fresh.levels().copy()
    bad = control.state()
    bad["vitals"] = {"miscoverage": "x"}
    with pytest.raises(ValueError, match="vitals"):
        fresh.restore(bad)
    np.testing.assert_array_equal(fresh.levels(), before)


class Thin(Forecaster):
    """A forecast too sure of itself: every quantile is the context's median."""

    name = "thin"

    def quantiles_at(
        self,
        history: FloatArray,
        origins: IntArray,
        levels: FloatArray,
        start_time: float,
        interval_s: float,
        horizon: int = 1,
    ) -> FloatArray:
        med = np.array([np.nanmedian(history[:, max(0, o - 50) : o], axis=1) for o in origins])
        med = np.nan_to_num(med)
        return np.repeat(med[:, :, None, None], len(levels), axis=3).repeat(horizon, axis=2)


@pytest.mark.parametrize("risk_control", [False, True])
def test_the_planner_keeps_a_slice_near_its_risk_on_traffic_its_forecast_misjudges(
    risk_control,
) -> None:
    planner = Planner(POLICY, Thin(), PlannerSettings(risk_control=risk_control))
    i = POLICY.slice_index("consults")  # risk 1e-2, floor 20 Mbit/s, cap 100 Mbit/s
    rng = np.random.default_rng(7)
    n = 3000
    demand = np.zeros((n, len(POLICY.slices), 2))
    demand[:, i] = 40e6 * rng.lognormal(0.0, 0.25, (n, 2))  # above the floor, under the cap
    history = demand.reshape(n, -1).T
    forecasts = planner.forecast(history, np.arange(1, n), 0.0, 1.0)
    misses, counted = 0, 0
    rates = None
    for t, f in enumerate(forecasts, start=1):
        if rates is not None:
            counted += 1
            misses += int(demand[t - 1, i, 0] > rates[i, 0])
        rates = planner.step(f, measured_bps=demand[t - 1]).rates_bps
    rate = misses / counted
    risk = POLICY.slice("consults").risk
    if risk_control:
        assert rate <= risk + (1 + GAIN) / (GAIN * counted)
        assert rate > 0.3 * risk  # it spends the risk it may, not far less
    else:
        assert rate > 10 * risk  # the forecast alone misses far more often than promised
