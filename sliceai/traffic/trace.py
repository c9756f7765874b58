"""The trace model: offered load per interval, slice and direction.

A :class:`Trace` is a dense array ``load_bps`` of shape
``(n_intervals, n_slices, 2)``: float64 bit/s, direction 0 is downlink, 1 is
uplink, NaN marks a missing measurement. Intervals are fixed-length
(``interval_s``, 0.25 s to 15 min) and start at ``start`` (epoch seconds).
Optional extra measurements (``delay_ms``, ``loss``, ``prb_used``...) share
the same shape. Readers yield traces in chunks of consecutive intervals so a
trace bigger than memory can stream through the replay.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

MIN_INTERVAL_S = 0.25
MAX_INTERVAL_S = 900.0
DL, UL = 0, 1
DIRECTION_NAMES = ("dl", "ul")


class TraceError(ValueError):
    """A trace that is malformed: bad shape, interval or values; ``str`` says where."""


class TraceReadError(TraceError):
    """A trace file that cannot be read: malformed, truncated or inconsistent.

    ``path`` is the file and ``position`` where in it the problem is ("line 12",
    "packet 7 at byte 4242", "byte 96"); both appear in ``str(error)``.
    """

    def __init__(self, path: object, position: str | None, message: str) -> None:
        self.path = str(path)
        self.position = position
        self.reason = message
        where = self.path if position is None else f"{self.path}: {position}"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Trace:
    start: float
    interval_s: float
    slices: tuple[str, ...]
    load_bps: npt.NDArray[np.float64]
    extras: Mapping[str, npt.NDArray[np.float64]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not MIN_INTERVAL_S <= self.interval_s <= MAX_INTERVAL_S:
            raise TraceError(
                f"interval {self.interval_s:g} s outside "
                f"{MIN_INTERVAL_S:g} s .. {MAX_INTERVAL_S:g} s"
            )
        load = np.asarray(self.load_bps, dtype=np.float64)
        if load.ndim != 3 or load.shape[1] != len(self.slices) or load.shape[2] != 2:
            raise TraceError(
                f"load_bps has shape {load.shape}; expected (n_intervals, {len(self.slices)}, 2)"
            )
        if len(set(self.slices)) != len(self.slices):
            raise TraceError("slice names in a trace must be unique")
        if np.any(load < 0):
            raise TraceError("negative offered load")
        load.setflags(write=False)
        object.__setattr__(self, "load_bps", load)
        extras = {}
        for name, arr in self.extras.items():
            a = np.asarray(arr, dtype=np.float64)
            if a.shape != load.shape:
                raise TraceError(f"extra {name!r} has shape {a.shape}, load has {load.shape}")
            a.setflags(write=False)
            extras[name] = a
        object.__setattr__(self, "extras", MappingProxyType(extras))

    @property
    def n_intervals(self) -> int:
        return int(self.load_bps.shape[0])

    @property
    def duration_s(self) -> float:
        return self.n_intervals * self.interval_s

    def timestamps(self) -> npt.NDArray[np.float64]:
        """Start time (epoch s) of every interval."""
        return self.start + self.interval_s * np.arange(self.n_intervals, dtype=np.float64)

    def slice_index(self, name: str) -> int:
        return self.slices.index(name)

    @classmethod
    def concat(cls, chunks: Iterable[Trace]) -> Trace:
        """Join chunks of consecutive intervals (as readers yield them) into one trace.

        Every chunk must have the same slices, interval and extras, and start
        where the previous one ended; meant for traces that fit in memory.
        """
        parts = list(chunks)
        if not parts:
            raise TraceError("no chunks to concatenate: the trace is empty")
        first = parts[0]
        end = first.start
        for i, part in enumerate(parts):
            if part.slices != first.slices or part.interval_s != first.interval_s:
                raise TraceError(f"chunk {i} has other slices or another interval than chunk 0")
            if set(part.extras) != set(first.extras):
                raise TraceError(f"chunk {i} has other extras than chunk 0")
            if abs(part.start - end) > 1e-6 * first.interval_s + 1e-9 * abs(end):
                raise TraceError(f"chunk {i} starts at {part.start:.6f}, expected {end:.6f}")
            end = part.start + part.duration_s
        if len(parts) == 1:
            return first
        return cls(
            first.start,
            first.interval_s,
            first.slices,
            np.concatenate([p.load_bps for p in parts]),
            {k: np.concatenate([p.extras[k] for p in parts]) for k in first.extras},
        )

    def chunks(self, n_intervals: int) -> Iterator[Trace]:
        """This trace as consecutive chunks of at most ``n_intervals`` intervals."""
        if n_intervals < 1:
            raise TraceError(f"chunk length must be at least 1 interval, got {n_intervals}")
        for first in range(0, max(self.n_intervals, 1), n_intervals):
            yield self.window(first, min(first + n_intervals, self.n_intervals))

    def window(self, first: int, stop: int) -> Trace:
        """Intervals ``[first, stop)`` as a trace of their own."""
        return Trace(
            self.start + first * self.interval_s,
            self.interval_s,
            self.slices,
            self.load_bps[first:stop],
            {k: v[first:stop] for k, v in self.extras.items()},
        )
