"""The planner process: plans what the server process would plan, mirrors what it learnt,
and when it dies or hangs the server process plans until it is back."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from sliceai.api.server import lower_priority
from sliceai.engine import Engine, EngineSettings, StateStore
from sliceai.engine.clock import ManualClock
from sliceai.engine.loop import PlanRecord
from sliceai.engine.planner_process import (
    PlannerProcess,
    PlannerUnavailable,
    RemotePlanner,
    _extends,
    set_nice,
)
from sliceai.planning import (
    EwmaForecaster,
    Forecaster,
    PooledForecaster,
    RollingQuantileForecaster,
)
from sliceai.planning.forecasters import FloatArray, IntArray

#: A file whose presence makes :class:`Stalling` sleep (the child reads the same disk).
STALL_FILE = "SLICEAI_TEST_STALL"


class Stalling(RollingQuantileForecaster):
    """Rolling quantiles; in a child process, after sleeping 3 s whenever the file named
    by $SLICEAI_TEST_STALL exists."""

    def quantiles_at(self, *args, **kw):  # type: ignore[no-untyped-def]
        flag = os.environ.get(STALL_FILE)
        if flag and multiprocessing.parent_process() is not None and Path(flag).exists():
            time.sleep(3.0)
        return super().quantiles_at(*args, **kw)


class Level(Forecaster):
    """Every quantile at ``bps`` (a model that says one thing)."""

    def __init__(self, bps: float) -> None:
        self.bps = bps
        self.name = f"level-{bps:g}"

    def quantiles_at(
        self,
        history: FloatArray,
        origins: IntArray,
        levels: FloatArray,
        start_time: float,
        interval_s: float,
        horizon: int = 1,
    ) -> FloatArray:
        return np.full((len(origins), history.shape[0], horizon, len(levels)), self.bps)


def pool() -> PooledForecaster:
    """What both sides forecast with: a pool that learns online (no torch)."""
    return PooledForecaster([Stalling(), EwmaForecaster(), RollingQuantileForecaster()])


def level_pool() -> PooledForecaster:
    return PooledForecaster([Level(20e6), RollingQuantileForecaster()], prior=[0.999, 0.001])


def broken() -> Forecaster:
    raise RuntimeError("checkpoint is corrupt")


def _engine(
    path: Path,
    policy_text: str,
    clock: ManualClock,
    process: PlannerProcess | None,
    build: Callable[[], Forecaster] = pool,
) -> Engine:
    return Engine(
        StateStore(path),
        policy_text,
        build(),
        settings=EngineSettings(interval_s=1.0),
        clock=clock.clock,
        planner_process=process,
    )


def _step(eng: Engine, clock: ManualClock, rng: np.random.Generator) -> PlanRecord:
    """One interval of bursty telemetry (misses and all), stamped by the engine's clock."""
    names = eng.policy.slice_names
    dl = 30e6 * rng.lognormal(0.0, 0.6, len(names))
    eng.ingest("ctl", clock.clock.wall(), 1.0, names, dl, dl / 3)
    plan = eng.loop.step()
    clock.advance(1.0)
    return plan


def _kill_and_wait_for_restart(
    eng: Engine, clock: ManualClock, rng: np.random.Generator, process: PlannerProcess
) -> None:
    """kill -9 the child; the next interval finds it gone and asks for its first restart."""
    assert process.pid is not None
    os.kill(process.pid, signal.SIGKILL)
    _step(eng, clock, rng)
    deadline = time.monotonic() + 120
    while not (process.alive and process.restarts == 1):
        assert time.monotonic() < deadline, "the planner process was not restarted"
        time.sleep(0.2)


@pytest.fixture
def process() -> Iterator[PlannerProcess]:
    proc = PlannerProcess(pool, start_timeout_s=120)
    yield proc
    proc.close()


def test_the_planner_process_plans_what_the_server_process_would(
    tmp_path: Path, policy_text: str, process: PlannerProcess
) -> None:
    here_clock, there_clock = ManualClock(), ManualClock()
    here = _engine(tmp_path / "a.db", policy_text, here_clock, None)
    there = _engine(tmp_path / "b.db", policy_text, there_clock, process)
    assert isinstance(there.state.planner, RemotePlanner)
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(60):
        a, b = _step(here, here_clock, rng_a), _step(there, there_clock, rng_b)
        np.testing.assert_allclose(b.rates_bps, a.rates_bps, rtol=1e-9, atol=1e-3)
        assert b.explanations == a.explanations
        assert b.mode == a.mode == "optimized"
        assert "server process" not in b.explanation
    # What the child learnt is mirrored here: risk control and pool weights.
    assert here.state.planner.risk is not None
    assert there.state.planner.risk is not None
    assert there.state.planner.risk.state() == here.state.planner.risk.state()
    assert sum(e["misses"] for e in here.state.planner.risk.state().values()) > 0
    assert isinstance(there.forecaster, PooledForecaster)
    assert isinstance(here.forecaster, PooledForecaster)
    assert there.forecaster.loss is not None
    assert here.forecaster.loss is not None
    np.testing.assert_allclose(there.forecaster.loss, here.forecaster.loss)
    # GetForecast here reads the mirrored weights: the same answer as in one process.
    fa = here.forecast(["consults"], 3, [0.5, 0.9])
    fb = there.forecast(["consults"], 3, [0.5, 0.9])
    np.testing.assert_allclose(fb.values, fa.values)


def test_a_killed_planner_process_is_replaced_and_plans_go_on(
    tmp_path: Path, policy_text: str, process: PlannerProcess
) -> None:
    clock = ManualClock()
    eng = _engine(tmp_path / "s.db", policy_text, clock, process)
    rng = np.random.default_rng(1)
    for _ in range(20):
        _step(eng, clock, rng)
    assert eng.state.planner.risk is not None
    learnt = eng.state.planner.risk.state()
    assert process.pid is not None
    os.kill(process.pid, signal.SIGKILL)
    plan = _step(eng, clock, rng)  # planned here, from the mirrored state
    assert "planned in the server process" in plan.explanation
    assert plan.mode == "optimized"
    counted = sum(e["counted"] for e in eng.state.planner.risk.state().values())
    assert counted >= sum(e["counted"] for e in learnt.values())  # carried on, not reset
    deadline = time.monotonic() + 120
    while not (process.alive and process.restarts == 1):
        assert time.monotonic() < deadline, "the planner process was not restarted"
        _step(eng, clock, rng)  # the loop keeps planning meanwhile
        time.sleep(0.2)
    plan = _step(eng, clock, rng)
    assert "server process" not in plan.explanation  # the new child plans again


def test_a_planner_process_that_hangs_costs_one_interval_not_the_loop(
    tmp_path: Path, policy_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag = tmp_path / "stall"
    monkeypatch.setenv(STALL_FILE, str(flag))  # before the child starts: it inherits it
    process = PlannerProcess(pool, start_timeout_s=120)
    try:
        clock = ManualClock()
        eng = _engine(tmp_path / "s.db", policy_text, clock, process)
        rng = np.random.default_rng(2)
        assert "server process" not in _step(eng, clock, rng).explanation
        flag.touch()  # the child now sleeps 3 s in every forecast
        plan = _step(eng, clock, rng)
        assert "no answer within 1 s; planned in the server process" in plan.explanation
        assert plan.mode == "optimized"
        flag.unlink()
        deadline = time.monotonic() + 120
        while not (process.alive and process.restarts == 1):
            assert time.monotonic() < deadline, "the hung planner process was not replaced"
            time.sleep(0.2)
        assert "server process" not in _step(eng, clock, rng).explanation
    finally:
        process.close()


def test_a_planner_process_that_cannot_start_says_why() -> None:
    with pytest.raises(PlannerUnavailable, match="checkpoint is corrupt"):
        PlannerProcess(broken, start_timeout_s=120)


def test_a_member_swapped_in_reaches_the_planner_process(tmp_path: Path, policy_text: str) -> None:
    process = PlannerProcess(level_pool, start_timeout_s=120)
    try:
        clock = ManualClock()
        eng = _engine(tmp_path / "s.db", policy_text, clock, process, level_pool)
        rng = np.random.default_rng(4)
        before = _step(eng, clock, rng)
        eng.swap_member(0, Level(80e6))
        after = _step(eng, clock, rng)
        assert "server process" not in after.explanation
        last = eng.loop.last_forecast
        assert last is not None
        # the forecast came from the child, which now pools the new member
        assert np.median(last[1].quantiles) > 70e6
        assert after.rates_bps.sum() > before.rates_bps.sum()
        # ... and so does a child started after a crash
        _kill_and_wait_for_restart(eng, clock, rng, process)
        again = _step(eng, clock, rng)
        assert "server process" not in again.explanation
        last = eng.loop.last_forecast
        assert last is not None
        assert np.median(last[1].quantiles) > 70e6
    finally:
        process.close()


def test_the_history_is_sent_in_full_only_when_the_newest_column_will_not_do() -> None:
    rng = np.random.default_rng(5)
    sent = rng.random((4, 10))
    sent[1, 3] = np.nan  # missing values compare equal
    grown = np.concatenate([sent, rng.random((4, 1))], axis=1)
    assert _extends(grown, sent)  # not full yet: one column longer
    assert _extends(grown[:, 1:], sent)  # full: the oldest column dropped
    later = np.concatenate([grown, rng.random((4, 1))], axis=1)[:, 2:]
    assert not _extends(later, sent)  # two intervals later: resend
    changed = grown.copy()
    changed[0, 4] += 1.0  # the past rewritten (a rebound history)
    assert not _extends(changed, sent)
    assert not _extends(grown[:3], sent)  # other series


def test_a_restarted_planner_process_keeps_the_first_ones_priority(
    tmp_path: Path, policy_text: str
) -> None:
    process = PlannerProcess(pool, start_timeout_s=120)
    try:
        assert process.pid is not None
        base = os.getpriority(os.PRIO_PROCESS, process.pid)

        def loop_thread() -> None:  # as `serve`: the server's own threads run lower
            lower_priority(5)
            clock = ManualClock()
            eng = _engine(tmp_path / "s.db", policy_text, clock, process)
            rng = np.random.default_rng(6)
            _step(eng, clock, rng)
            assert process.pid is not None
            os.kill(process.pid, signal.SIGKILL)
            _step(eng, clock, rng)  # finds it gone: a restart is asked for from here

        t = threading.Thread(target=loop_thread)
        t.start()
        t.join()
        deadline = time.monotonic() + 120
        while not (process.alive and process.restarts == 1):
            assert time.monotonic() < deadline, "the planner process was not restarted"
            time.sleep(0.2)
        assert process.pid is not None
        assert os.getpriority(os.PRIO_PROCESS, process.pid) == base
    finally:
        process.close()


def test_the_planner_process_runs_at_the_nice_value_given_restarted_too(
    tmp_path: Path, policy_text: str
) -> None:
    # lower than this process (no privilege needed): serve --planner-nice
    target = min(19, os.getpriority(os.PRIO_PROCESS, 0) + 3)
    process = PlannerProcess(pool, start_timeout_s=120, nice=target)
    try:
        assert process.pid is not None
        assert os.getpriority(os.PRIO_PROCESS, process.pid) == target
        clock = ManualClock()
        eng = _engine(tmp_path / "s.db", policy_text, clock, process)
        rng = np.random.default_rng(7)
        _step(eng, clock, rng)
        _kill_and_wait_for_restart(eng, clock, rng, process)
        assert os.getpriority(os.PRIO_PROCESS, process.pid) == target
    finally:
        process.close()


def test_a_refused_nice_value_is_reported_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def refuse(_which: int, _who: int, value: int) -> None:
        calls.append(value)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "setpriority", refuse)
    assert set_nice(None) is None
    assert calls == []
    why = set_nice(-10)
    assert calls == [-10]
    assert why is not None
    assert "-10 was refused" in why
    assert "CAP_SYS_NICE" in why


def test_the_plan_comes_back_first_and_the_state_is_mirrored_after(
    tmp_path: Path, policy_text: str, process: PlannerProcess
) -> None:
    clock = ManualClock()
    eng = _engine(tmp_path / "s.db", policy_text, clock, process)
    remote = eng.state.planner
    assert isinstance(remote, RemotePlanner)
    rng = np.random.default_rng(8)
    last = _step(eng, clock, rng)  # the loop mirrors once it has published
    previous = remote.local.snapshot().previous
    assert previous is not None
    np.testing.assert_allclose(previous.rates_bps, last.rates_bps)
    n = len(eng.policy.slice_names)
    history = np.full((2 * n, 300), 5e6)  # a calm history: other rates than the last plan's
    _, step = remote.plan(history, clock.clock.wall(), 1.0)
    assert not np.allclose(step.rates_bps, last.rates_bps)
    held = remote.local.snapshot().previous
    assert held is not None
    np.testing.assert_allclose(held.rates_bps, last.rates_bps)  # not mirrored yet
    remote.settle()
    mirrored = remote.local.snapshot().previous
    assert mirrored is not None
    np.testing.assert_allclose(mirrored.rates_bps, step.rates_bps)
    assert process.settle(1.0) is None  # taken once
