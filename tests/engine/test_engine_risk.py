"""The risk control in the live service: it reacts to misses, says so in the plan, and its
levels survive a restart (SQLite) and a policy change."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sliceai.engine import LOCAL_ADMIN, Engine, EngineSettings, StateStore
from sliceai.engine.clock import ManualClock
from sliceai.engine.core import RISK_SAVE_EVERY
from sliceai.planning import RollingQuantileForecaster


def _engine(db: Path, text: str, clock: ManualClock) -> Engine:
    return Engine(
        StateStore(db),
        text,
        RollingQuantileForecaster(window=5),
        settings=EngineSettings(interval_s=1.0),
        clock=clock.clock,
    )


def _run(engine: Engine, clock: ManualClock, n: int, seed: int = 0) -> None:
    """``n`` intervals of consults traffic that jumps above what the last 5 intervals saw."""
    names = engine.policy.slice_names
    rng = np.random.default_rng(seed)
    i = names.index("consults")
    for _ in range(n):
        dl = np.full(len(names), 1e5)
        dl[i] = 30e6 * (3.0 if rng.random() < 0.2 else 1.0)  # above the 20 Mbit/s floor
        engine.ingest("ctl", clock.clock.wall(), 1.0, names, dl, dl / 2)
        clock.advance(1.0)
        engine.loop.step()


def test_misses_raise_the_level_and_the_plan_says_why(tmp_path: Path, policy_text: str) -> None:
    clock = ManualClock()
    engine = _engine(tmp_path / "s.db", policy_text, clock)
    _run(engine, clock, 60)
    plan = engine.hub.latest
    assert plan is not None
    i = engine.policy.slice_index("consults")
    risk = engine.state.planner.risk
    assert risk is not None
    assert risk.levels()[i, 0] > 1 - engine.policy.slice("consults").risk
    assert "level raised to" in plan.explanations[i]
    assert "misses in the last" in plan.explanations[i]
    engine.stop()


def test_levels_survive_a_restart_and_a_crash(tmp_path: Path, policy_text: str) -> None:
    clock = ManualClock()
    db = tmp_path / "s.db"
    first = _engine(db, policy_text, clock)
    _run(first, clock, 40)
    first.stop()  # a clean stop saves the state
    saved = first.state.planner.risk.levels().copy()  # type: ignore[union-attr]
    first.store.close()
    second = _engine(db, policy_text, clock)
    np.testing.assert_array_equal(second.state.planner.risk.levels(), saved)  # type: ignore[union-attr]
    # A crash (no stop): at most the last RISK_SAVE_EVERY plans are lost.
    _run(second, clock, 3 * RISK_SAVE_EVERY, seed=1)
    at_crash = second.state.planner.risk.miscoverage.copy()  # type: ignore[union-attr]
    second.store.close()
    third = _engine(db, policy_text, clock)
    restored = third.state.planner.risk  # type: ignore[union-attr]
    assert restored is not None
    assert restored.counted.sum() > 0
    assert not np.array_equal(restored.miscoverage, third.state.planner.risk.alpha)  # type: ignore[union-attr]
    np.testing.assert_array_equal(restored.miscoverage, at_crash)  # 30 plans: saved at the 30th


def test_a_policy_change_keeps_the_levels_of_the_slices_that_stay(
    tmp_path: Path, policy_text: str
) -> None:
    clock = ManualClock()
    engine = _engine(tmp_path / "s.db", policy_text, clock)
    _run(engine, clock, 40)
    before = engine.state.planner.risk.levels().copy()  # type: ignore[union-attr]
    engine.apply_policy(
        policy_text.replace("capacity: 500 Mbps", "capacity: 450 Mbps"), LOCAL_ADMIN
    )
    np.testing.assert_array_equal(engine.state.planner.risk.levels(), before)  # type: ignore[union-attr]
    engine.stop()


def test_a_corrupt_stored_state_starts_afresh(tmp_path: Path, policy_text: str) -> None:
    store = StateStore(tmp_path / "s.db")
    store.save_state("risk-control", {"consults": [{"miscoverage": "nan?"}]})
    clock = ManualClock()
    engine = Engine(store, policy_text, RollingQuantileForecaster(), clock=clock.clock)
    risk = engine.state.planner.risk
    assert risk is not None
    np.testing.assert_array_equal(risk.miscoverage, risk.alpha)
    engine.stop()
