"""The telemetry recorder: what the loop planned from lands in SQLite in batches, off the
loop's thread, comes back as a trace on the interval grid, and old rows are pruned."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sliceai.engine import Engine, EngineSettings, StateStore
from sliceai.engine import recorder as recorder_module
from sliceai.engine.clock import ManualClock
from sliceai.engine.recorder import TelemetryRecorder, stored_trace
from sliceai.planning import RollingQuantileForecaster

INTERVAL = 10.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def engine(tmp_path: Path, policy_text: str, clock: ManualClock) -> Iterator[Engine]:
    store = StateStore(tmp_path / "state.db")
    eng = Engine(
        store,
        policy_text,
        RollingQuantileForecaster(),
        settings=EngineSettings(interval_s=INTERVAL),
        clock=clock.clock,
    )
    yield eng
    eng.stop()
    store.close()


def _step(engine: Engine, clock: ManualClock, dl: float, report: int | None = None) -> None:
    """One interval: every slice (or only slice ``report``) reports, the loop plans."""
    names = engine.policy.slice_names
    chosen = names if report is None else names[report : report + 1]
    n = len(chosen)
    engine.ingest("ctl", clock.clock.wall(), INTERVAL, chosen, np.full(n, dl), np.full(n, dl / 2))
    engine.loop.step()
    clock.advance(INTERVAL)


def test_each_plan_is_queued_and_written_in_one_batch(engine: Engine, clock: ManualClock) -> None:
    recorder = TelemetryRecorder(engine.store)
    recorder.attach(engine)
    first = clock.clock.wall()
    for k in range(4):
        _step(engine, clock, (k + 1) * 1e6)
    assert engine.store.load_telemetry() == []  # nothing written from the loop's thread
    n = len(engine.policy.slice_names)
    assert recorder.flush() == 4 * n
    rows = engine.store.load_telemetry(INTERVAL)
    assert len(rows) == 4 * n
    t, name, interval, dl, ul = rows[0]
    # the plan at `first` was planned from the interval before it
    assert (t, interval, dl, ul) == (first - INTERVAL, INTERVAL, 1e6, 0.5e6)
    assert name in engine.policy.slice_names
    trace = stored_trace(engine.store, engine.policy.slice_names, INTERVAL)
    assert trace is not None
    assert (trace.start, trace.interval_s, trace.n_intervals) == (first - INTERVAL, INTERVAL, 4)
    np.testing.assert_array_equal(trace.load_bps[:, :, 0], np.outer([1, 2, 3, 4], np.ones(n)) * 1e6)
    np.testing.assert_array_equal(trace.load_bps[:, :, 1], trace.load_bps[:, :, 0] / 2)


def test_gaps_and_unreported_slices_come_back_missing(engine: Engine, clock: ManualClock) -> None:
    recorder = TelemetryRecorder(engine.store)
    recorder.attach(engine)
    _step(engine, clock, 1e6)
    clock.advance(2 * INTERVAL)  # two intervals without a plan (the service was down)
    _step(engine, clock, 2e6, report=0)
    recorder.flush()
    names = engine.policy.slice_names
    trace = stored_trace(engine.store, (*names, "not-stored"), INTERVAL)
    assert trace is not None
    assert trace.n_intervals == 4
    dl = trace.load_bps[:, :, 0]
    assert np.isnan(dl[1:3]).all()
    assert dl[3, 0] == 2e6
    assert np.isnan(dl[:, -1]).all()  # a slice the store has not seen
    assert stored_trace(engine.store, names, 60.0) is None  # another clock: nothing


def test_rows_beyond_the_retention_are_pruned(engine: Engine, clock: ManualClock) -> None:
    recorder = TelemetryRecorder(engine.store, retention_s=2.5 * INTERVAL)
    recorder.attach(engine)
    for k in range(6):
        _step(engine, clock, (k + 1) * 1e6)
        recorder.flush()
    trace = stored_trace(engine.store, engine.policy.slice_names, INTERVAL)
    assert trace is not None
    assert trace.load_bps[:, 0, 0].tolist() == [4e6, 5e6, 6e6]


def test_the_writer_thread_stores_what_is_left_when_stopped(
    engine: Engine, clock: ManualClock
) -> None:
    recorder = TelemetryRecorder(engine.store, flush_every_s=3600.0)
    recorder.attach(engine)
    recorder.start()
    for _ in range(3):
        _step(engine, clock, 1e6)
    recorder.stop()
    assert len(engine.store.load_telemetry()) == 3 * len(engine.policy.slice_names)


def test_a_failed_write_keeps_the_rows_for_the_next(engine: Engine, clock: ManualClock) -> None:
    recorder = TelemetryRecorder(engine.store)
    recorder.attach(engine)
    _step(engine, clock, 1e6)
    real = engine.store.add_telemetry

    def broken(rows: object) -> None:
        raise OSError("disk full")

    engine.store.add_telemetry = broken  # type: ignore[method-assign]
    with pytest.raises(OSError, match="disk full"):
        recorder.flush()
    engine.store.add_telemetry = real  # type: ignore[method-assign]
    assert recorder.flush() == len(engine.policy.slice_names)


def test_the_history_is_read_in_pieces_with_the_same_result(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = engine.policy.slice_names
    rows = [
        (1000.0 + k * INTERVAL + 0.01 * (k % 3), name, INTERVAL, float(k * 10 + j), None)
        for k in range(10)
        for j, name in enumerate(names)
        if (k, j) != (4, 1)
    ]
    engine.store.add_telemetry(rows)
    whole = stored_trace(engine.store, names, INTERVAL)
    monkeypatch.setattr(recorder_module, "READ_INTERVALS", 3)
    pieces = stored_trace(engine.store, names, INTERVAL)
    assert whole is not None
    assert pieces is not None
    np.testing.assert_array_equal(whole.load_bps, pieces.load_bps)
    assert whole.load_bps[:, 2, 0].tolist() == [k * 10 + 2 for k in range(10)]
    assert np.isnan(whole.load_bps[4, 1, 0])
    assert np.isnan(whole.load_bps[:, :, 1]).all()
