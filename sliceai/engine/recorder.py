"""The telemetry the service plans from, kept in its SQLite store (``sliceai serve --adapt``).

:class:`TelemetryRecorder` is an ``engine.on_plan_callbacks`` callback: each plan hands it
the interval it was planned from (per slice and direction, the merged measurement in
bit/s, NaN where no source reported), which it only appends to a list, so the loop does
not wait on the disk. A writer thread stores the list in one transaction every
``flush_every_s`` and deletes what is older than ``retention_s`` (14 days by default)
behind the newest interval stored. :func:`stored_trace` reads the history back as a
:class:`~sliceai.traffic.Trace` on the interval grid: what the adaptation loop fine-tunes
and scores on.
"""

from __future__ import annotations

import logging
import math
import threading

import numpy as np

from sliceai.engine.core import Engine
from sliceai.engine.loop import PlanRecord
from sliceai.engine.store import StateStore, TelemetryRow
from sliceai.engine.telemetry import CollectedTelemetry
from sliceai.traffic import Trace

log = logging.getLogger(__name__)

#: How long the stored telemetry reaches back by default, s.
RETENTION_S = 14 * 86400.0
#: Seconds between two writes of the rows gathered meanwhile.
FLUSH_EVERY_S = 10.0
#: Rows waiting for the disk, at most (the oldest go first when it is unwritable).
MAX_PENDING_ROWS = 200_000
#: Intervals :func:`stored_trace` reads from the store at a time.
READ_INTERVALS = 4096


class TelemetryRecorder:
    """Stores each planned interval's measurements (module docstring)."""

    def __init__(
        self,
        store: StateStore,
        retention_s: float = RETENTION_S,
        flush_every_s: float = FLUSH_EVERY_S,
    ) -> None:
        if not retention_s > 0 or not flush_every_s > 0:
            raise ValueError("retention_s and flush_every_s must be positive")
        self.store = store
        self.retention_s = retention_s
        self.flush_every_s = flush_every_s
        self._lock = threading.Lock()
        self._pending: list[TelemetryRow] = []
        self._dropped = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def attach(self, engine: Engine) -> None:
        """Record every plan ``engine`` publishes."""
        engine.on_plan_callbacks.append(self.observe)

    def observe(self, plan: PlanRecord, tel: CollectedTelemetry) -> None:
        """Queue the interval ``plan`` was planned from (it starts one interval before the
        plan's)."""
        start = plan.interval_start - plan.interval_s
        rows = [
            (
                start,
                name,
                plan.interval_s,
                _value(plan.measured_bps[i, 0]),
                _value(plan.measured_bps[i, 1]),
            )
            for i, name in enumerate(plan.policy.slice_names)
        ]
        with self._lock:
            self._pending.extend(rows)
            excess = len(self._pending) - MAX_PENDING_ROWS
            if excess > 0:
                del self._pending[:excess]
                self._dropped += excess

    def flush(self) -> int:
        """Write the queued rows and prune the old ones now; returns the rows written."""
        with self._lock:
            rows, self._pending = self._pending, []
            dropped, self._dropped = self._dropped, 0
        if dropped:
            log.warning(
                "telemetry recorder: %d rows dropped while the store was unwritable", dropped
            )
        if not rows:
            return 0
        try:
            self.store.add_telemetry(rows)
        except Exception:
            with self._lock:  # keep them for the next try
                self._pending[:0] = rows
            raise
        self.store.prune_telemetry(max(r[0] for r in rows) - self.retention_s)
        return len(rows)

    # -- writer thread --------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sliceai-recorder", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the writer and store what is left."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._flush_logged()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_every_s):
            self._flush_logged()

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception:
            log.exception("telemetry recorder: write failed; will retry")


def _value(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def stored_trace(
    store: StateStore,
    slice_names: tuple[str, ...],
    interval_s: float,
    since_unix_s: float | None = None,
) -> Trace | None:
    """The stored telemetry recorded at ``interval_s`` as a trace of ``slice_names`` (NaN
    where nothing is stored: gaps, slices the store has not seen), from the first stored
    interval (at or after ``since_unix_s``) to the last; None when nothing is stored. Each
    row goes to the interval nearest its start on the grid of the first. Read
    :data:`READ_INTERVALS` intervals at a time, so neither the rows nor the store's lock
    are held for the whole history."""
    span = store.telemetry_span(interval_s, since_unix_s)
    if span is None:
        return None
    first, last = span
    index = {name: i for i, name in enumerate(slice_names)}
    load = np.full((round((last - first) / interval_s) + 1, len(slice_names), 2), np.nan)
    step = READ_INTERVALS * interval_s
    lo = first - 0.5 * interval_s
    while lo <= last:
        rows = [r for r in store.load_telemetry(interval_s, lo, lo + step) if r[1] in index]
        lo += step
        if not rows:
            continue
        cols = np.rint((np.array([r[0] for r in rows]) - first) / interval_s).astype(np.int64)
        slices = np.array([index[r[1]] for r in rows], dtype=np.int64)
        for d in (0, 1):
            vals = np.array([np.nan if r[3 + d] is None else r[3 + d] for r in rows])
            load[cols, slices, d] = np.maximum(vals, 0.0)
    return Trace(first, interval_s, slice_names, load)
