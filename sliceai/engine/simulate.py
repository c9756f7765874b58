"""``sliceai serve --simulate``: a bundled traffic scenario played as a live telemetry source.

A thread generates the scenario (:mod:`sliceai.traffic.generators`) and
ingests one interval of it per control interval as source ``simulator``, so
the loop, the plans and the metrics move without any switch attached. Time is
compressed: each trace interval is played in one control interval.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from sliceai.engine.core import Engine
from sliceai.engine.errors import EngineError
from sliceai.traffic.generators import ScenarioError, generate, load_scenario

log = logging.getLogger(__name__)

SOURCE_ID = "simulator"


class SimulationError(ValueError):
    """The scenario cannot be played against the running policy."""


class Simulator:
    """Feeds ``scenario`` into ``engine`` every ``engine.settings.interval_s`` seconds."""

    def __init__(self, engine: Engine, scenario: str, intervals: int = 4096, seed: int = 0) -> None:
        try:
            spec = load_scenario(scenario)
            # The scenario's own interval shapes the traffic; playback is one interval per tick.
            trace = generate(
                spec, start=time.time(), n_intervals=intervals, interval_s=60.0, seed=seed
            )
        except ScenarioError as exc:
            raise SimulationError(str(exc)) from None
        names = engine.policy.slice_names
        shared = [n for n in trace.slices if n in names]
        if not shared:
            raise SimulationError(
                f"scenario {scenario!r} has slices {', '.join(trace.slices)}; "
                f"the policy has {', '.join(names)}: none in common"
            )
        cols = [trace.slice_index(n) for n in shared]
        self.slices = tuple(shared)
        self.load_bps = np.nan_to_num(trace.load_bps[:, cols, :])  # (intervals, n_shared, 2) bit/s
        self.engine = engine
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.step = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sliceai-simulator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def _run(self) -> None:
        interval = self.engine.settings.interval_s
        next_at = time.monotonic()
        while not self._stop.is_set():
            row = self.load_bps[self.step % len(self.load_bps)]
            try:
                self.engine.ingest(
                    SOURCE_ID, time.time(), interval, self.slices, row[:, 0], row[:, 1]
                )
            except EngineError as exc:  # e.g. the policy changed under us: keep going
                log.warning("simulator: %s", exc)
            self.step += 1
            next_at += interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))
