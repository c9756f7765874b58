"""Benchmark harness: ``sliceai bench [NAME...] [--json]`` and ``make bench``.

A benchmark is a module with ``run(quick: bool) -> Iterator[Figure]``,
registered by name in :data:`BENCHMARKS`. Each :class:`Figure` is one
measured number, optionally next to the same measurement of a peer
(another library or a bare baseline) taken in the same run;
``ratio = value / peer_value`` (so for times, below 1 means faster than the peer;
for throughputs, above 1 means more than the peer).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from sliceai.plugins import load

# name -> module that defines run(quick) -> Iterator[Figure]
BENCHMARKS: dict[str, str] = {
    "policy": "sliceai.policy.bench",
    "solver": "sliceai.solver.bench",
    "replay": "sliceai.replay.bench",
    "sweep": "sliceai.sweep.bench",
    "forecast": "sliceai.forecast.bench",
    "traffic": "sliceai.traffic.bench",
    "controller": "sliceai.controller.bench",
    "service": "sliceai.api.bench",
    "rest": "sliceai.api.rest.bench",
}


@dataclass(frozen=True)
class Figure:
    bench: str
    case: str
    metric: str
    value: float
    unit: str
    peer: str | None = None
    peer_value: float | None = None
    ratio: float | None = None
    note: str | None = None

    @classmethod
    def compare(
        cls,
        bench: str,
        case: str,
        metric: str,
        value: float,
        unit: str,
        peer: str,
        peer_value: float,
        note: str | None = None,
    ) -> Figure:
        ratio = value / peer_value if peer_value else None
        return cls(bench, case, metric, value, unit, peer, peer_value, ratio, note)

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        if out["note"] is None:
            del out["note"]
        return out


def time_calls(fn: Callable[[], object], repeat: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``repeat`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000.0


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation."""
    return float(np.percentile(np.asarray(values), q))


def iter_benchmarks(names: list[str], quick: bool) -> Iterator[Figure]:
    """The figures of the named benchmarks, in order; each module is loaded when its turn comes."""
    for name in names:
        yield from load(BENCHMARKS[name]).run(quick)
