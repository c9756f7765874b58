"""The control loop: plans, fail-safes, policy swaps, early triggering."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from sliceai.engine import (
    LOCAL_ADMIN,
    BwRequest,
    Caller,
    Engine,
    EngineSettings,
    InvalidInput,
    Precondition,
    StateStore,
)
from sliceai.engine.clock import ManualClock
from sliceai.planning import Forecaster, PooledForecaster, RollingQuantileForecaster
from sliceai.policy import DIRECTIONS, Policy
from sliceai.solver import Plan, SliceSolver


class BrokenForecaster(Forecaster):
    name = "broken"

    def quantiles_at(self, *args: object, **kw: object) -> np.ndarray:
        raise RuntimeError("weights are corrupt")


class FlakySolver(SliceSolver):
    """Works until ``fail`` is set, then raises; with ``slow`` each solve moves ``clock``
    on by that many seconds (a solve that takes that long)."""

    def __init__(self, policy: Policy, clock: ManualClock | None = None) -> None:
        super().__init__(policy)
        self.clock = clock
        self.fail = False
        self.slow = 0.0

    def solve(self, *args: object, **kw: object) -> Plan:
        if self.fail:
            raise RuntimeError("HiGHS status: infeasible")
        if self.slow and self.clock is not None:
            self.clock.advance(self.slow)
        return super().solve(*args, **kw)  # type: ignore[arg-type]


def _feed(engine: Engine, dl: float = 50e6) -> None:
    names = engine.policy.slice_names
    n = len(names)
    engine.ingest("ctl", time.time(), 1.0, names, np.full(n, dl), np.full(n, dl / 2))


def test_plan_carries_measurement_forecast_and_floors(engine: Engine) -> None:
    for _ in range(5):
        _feed(engine)
        plan = engine.loop.step()
    assert plan.mode == "optimized"
    assert plan.policy_version == 1
    assert plan.measured_bps[:, 0].tolist() == [50e6] * 5
    floors = np.array([[s.guaranteed_bps(d) for d in DIRECTIONS] for s in engine.policy.slices])
    assert (plan.rates_bps >= floors - 1e-3).all()
    assert plan.rates_bps[1].tolist() >= [35e6, 35e6]  # surgery-video floor
    assert engine.hub.latest is plan


def test_model_failure_falls_back_to_empirical_quantiles(tmp_path: Path, policy_text: str) -> None:
    eng = Engine(
        StateStore(tmp_path / "s.db"),
        policy_text,
        BrokenForecaster(),
        settings=EngineSettings(interval_s=0.2),
    )
    for _ in range(3):
        _feed(eng, 10e6)
        plan = eng.loop.step()
    assert plan.mode == "model-fallback"
    assert "weights are corrupt" in plan.explanation
    # rolling quantiles of a constant 10 Mbit/s are 10 Mbit/s
    assert plan.forecast_bps[4, 0] == pytest.approx(10e6)


def test_solver_failure_repeats_the_last_plan_then_guarantees_only(
    tmp_path: Path, policy_text: str
) -> None:
    solvers: list[FlakySolver] = []

    def factory(policy: Policy) -> FlakySolver:
        solvers.append(FlakySolver(policy))
        return solvers[-1]

    eng = Engine(
        StateStore(tmp_path / "s.db"),
        policy_text,
        RollingQuantileForecaster(),
        solver_factory=factory,
    )
    _feed(eng, 80e6)
    good = eng.loop.step()
    assert good.mode == "optimized"
    solvers[-1].fail = True
    modes = []
    for _ in range(eng.settings.loop.last_plan_limit + 2):
        _feed(eng, 80e6)
        plan = eng.loop.step()
        modes.append(plan.mode)
        if plan.mode == "last-plan":
            np.testing.assert_array_equal(plan.rates_bps, good.rates_bps)
    assert modes == ["last-plan"] * eng.settings.loop.last_plan_limit + ["guarantees-only"] * 2
    assert plan.rates_bps[:, 0].tolist() == [2e6, 35e6, 20e6, 1e6, 0.0]
    assert "infeasible" in plan.explanation
    solvers[-1].fail = False
    _feed(eng, 80e6)
    assert eng.loop.step().mode == "optimized"


def test_solver_overrun_counts_as_failure(tmp_path: Path, policy_text: str) -> None:
    clock = ManualClock()
    solvers: list[FlakySolver] = []

    def factory(policy: Policy) -> FlakySolver:
        solvers.append(FlakySolver(policy, clock))
        return solvers[-1]

    settings = EngineSettings(interval_s=0.2)
    settings.loop.solve_deadline_s = 0.01
    eng = Engine(
        StateStore(tmp_path / "s.db"),
        policy_text,
        RollingQuantileForecaster(),
        factory,
        settings,
        clock=clock.clock,
    )
    solvers[-1].slow = 0.01  # at the deadline: still in time
    assert eng.loop.step().mode == "optimized"
    solvers[-1].slow = 0.0101
    plan = eng.loop.step()
    assert plan.mode == "last-plan"
    assert "solve took 10.1 ms, deadline 10.0 ms" in plan.explanation


def test_grants_raise_the_allocation(engine: Engine) -> None:
    _feed(engine, 1e3)
    before = engine.loop.step()
    engine.request_grant(Caller("mec-app", "a"), BwRequest("a", "staff-embb", 30_000_000, "dl"))
    after = engine.loop.step()
    assert before.rates_bps[4, 0] < 30e6 <= after.rates_bps[4, 0]
    assert after.granted_bps[4].tolist() == [30e6, 0.0]


def test_stale_source_is_flagged_in_the_plan(tmp_path: Path, policy_text: str) -> None:
    clock = ManualClock()
    settings = EngineSettings(interval_s=0.02, stale_after_intervals=2)
    eng = Engine(
        StateStore(tmp_path / "s.db"),
        policy_text,
        RollingQuantileForecaster(),
        settings=settings,
        clock=clock.clock,
    )
    now = clock.clock.wall()
    eng.ingest("switch-9", now, 1.0, ["consults"], np.array([5e6]), np.array([5e6]))
    clock.advance(0.04)  # two intervals: not yet stale
    assert not eng.loop.step().stale_slices.any()
    clock.advance(0.001)
    plan = eng.loop.step()
    assert plan.stale_sources == ("switch-9",)
    assert plan.stale_slices.tolist() == [False, False, True, False, False]
    assert "switch-9" in plan.explanation
    assert np.isfinite(plan.forecast_bps).all()


def test_apply_policy_swaps_atomically_and_bad_policy_changes_nothing(
    engine: Engine, policy_text: str
) -> None:
    engine.loop.step()
    bad = policy_text.replace("priority: 90", "priority: 900").replace("risk: 0.001", "risk: 7")
    with pytest.raises(InvalidInput) as info:
        engine.apply_policy(bad, LOCAL_ADMIN)
    message = str(info.value)
    assert "slices[0].risk" in message
    assert "slices[4].priority" in message
    assert engine.policy_record.version == 1
    smaller = policy_text.replace("capacity: 500 Mbps", "capacity: 400 Mbps")
    record = engine.apply_policy(smaller, LOCAL_ADMIN)
    assert record.version == engine.policy_record.version == 2
    assert engine.loop.step().policy_version == 2
    with pytest.raises(Precondition):
        engine.apply_policy(policy_text, LOCAL_ADMIN, expected_version=1)
    dry = engine.apply_policy(policy_text, LOCAL_ADMIN, dry_run=True)
    assert dry.version == 3
    assert engine.policy_record.version == 2
    assert [r.version for r in engine.store.list_policies()] == [2, 1]


def test_policy_that_strands_grants_is_refused(engine: Engine, policy_text: str) -> None:
    engine.request_grant(LOCAL_ADMIN, BwRequest("a", "staff-embb", 300_000_000, "dl"))
    tighter = policy_text.replace("capacity: 500 Mbps", "capacity: 200 Mbps")
    with pytest.raises(Precondition, match="grants"):
        engine.apply_policy(tighter, LOCAL_ADMIN)
    assert engine.policy_record.version == 1


def test_loop_thread_plans_as_soon_as_every_source_reports(engine: Engine) -> None:
    engine.settings.loop.interval_s = 5.0  # the timer alone would take seconds
    engine.start()
    first = engine.hub.latest
    assert first is not None
    time.sleep(5.0 * engine.settings.loop.min_gap_fraction)
    _feed(engine)
    plan = engine.hub.wait_newer(first.version, timeout=3.0)
    assert plan is not None
    assert plan.latency_s is not None
    assert plan.measured_bps[0, 0] == 50e6


class StepForecaster(Forecaster):
    """Quantile at level q of step k is (k + 1) * 1e6 * q, whatever the history."""

    name = "steps"

    def quantiles_at(self, history, origins, levels, start_time, interval_s, horizon=1):  # type: ignore[no-untyped-def]
        steps = np.arange(1, horizon + 1)[None, None, :, None]
        shape = (len(origins), history.shape[0], horizon, len(levels))
        return np.broadcast_to(steps * 1e6 * np.asarray(levels), shape).copy()


def test_forecast_query_uses_the_forecaster_over_the_horizon(
    tmp_path: Path, policy_text: str
) -> None:
    eng = Engine(StateStore(tmp_path / "s.db"), policy_text, StepForecaster())
    _feed(eng)
    eng.loop.step()
    result = eng.forecast(["consults"], 3, [0.5, 0.9])
    assert result.values.shape == (1, 2, 3, 2)
    assert result.values[0, 0, 2].tolist() == [1.5e6, 2.7e6]
    assert not result.fallback


def test_forecast_query_replaces_a_broken_model_and_says_so(
    tmp_path: Path, policy_text: str
) -> None:
    eng = Engine(StateStore(tmp_path / "s.db"), policy_text, BrokenForecaster())
    _feed(eng, 10e6)
    eng.loop.step()
    result = eng.forecast(["consults"], 2, [0.5])
    assert result.fallback
    assert result.values[0, 0, :, 0].tolist() == [10e6, 10e6]  # rolling quantiles


def test_forecast_queries_leave_the_planners_pool_as_it_was(
    tmp_path: Path, policy_text: str
) -> None:
    clock = ManualClock()
    pool = PooledForecaster([StepForecaster(), RollingQuantileForecaster()])
    eng = Engine(StateStore(tmp_path / "s.db"), policy_text, pool, clock=clock.clock)

    def step() -> None:  # one interval: 1 s of the engine's clock, telemetry stamped by it
        names = eng.policy.slice_names
        dl = np.full(len(names), 50e6)
        eng.ingest("ctl", clock.clock.wall(), 1.0, names, dl, dl / 2)
        eng.loop.step()
        clock.advance(1.0)

    for _ in range(30):
        step()
    assert pool.loss is not None
    learnt = pool.loss.copy()
    assert learnt.shape[0] == 2 * len(eng.policy.slice_names)
    assert learnt.any()
    # An app asking about one slice, further ahead than the planner looks.
    pooled = eng.forecast(["consults"], 4, [0.5, 0.9])
    np.testing.assert_array_equal(pool.loss, learnt)  # neither reset nor scored
    # ... answered with the weights the pool learnt for that slice's two series.
    i = eng.policy.slice_index("consults")
    rows = np.array([2 * i, 2 * i + 1])
    weights = pool.weights(len(learnt), np.array([0.5, 0.9]))[rows]  # (2, k, Q)
    assert not np.allclose(weights, weights[:, :1])  # the members weigh differently
    assert not pooled.fallback
    step()
    assert pool.loss.shape == learnt.shape  # the planner goes on from what it learnt


class DayForecaster(RollingQuantileForecaster):
    """Reads a day back plus 60 intervals."""

    def history_length(self, interval_s: float) -> int:
        return round(86400 / interval_s) + 60


def test_the_loop_keeps_the_history_its_forecaster_reads(tmp_path: Path, policy_text: str) -> None:
    settings = EngineSettings(interval_s=60.0)
    eng = Engine(StateStore(tmp_path / "s.db"), policy_text, DayForecaster(), settings=settings)
    eng.loop.step()
    assert eng.loop.history is not None
    assert eng.loop.history.capacity == 1500  # a day at 60 s is 1,440 intervals
    eng.stop()
