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

from collections.abc import Mapping
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
                f"interval {self.interval_s:g} s outside {MIN_INTERVAL_S:g} s .. {MAX_INTERVAL_S:g} s"
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

    def window(self, first: int, stop: int) -> Trace:
        """Intervals ``[first, stop)`` as a trace of their own."""
        return Trace(
            self.start + first * self.interval_s,
            self.interval_s,
            self.slices,
            self.load_bps[first:stop],
            {k: v[first:stop] for k, v in self.extras.items()},
        )
