"""Where the engine reads the time, so that tests can hold it still.

Every decision that depends on time (a source gone stale, a solve past its
deadline, a telemetry timestamp too far off) reads a :class:`Clock` handed to the
engine instead of the ``time`` module. :class:`ManualClock` is one that moves only
when told to, for tests and simulations that step the loop themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Clock:
    """``wall``: epoch s (timestamps); ``monotonic``: s that never go back (staleness,
    deadlines, latencies)."""

    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.perf_counter


SYSTEM_CLOCK = Clock()


class ManualClock:
    """A clock that moves only on :meth:`advance`; ``clock`` is the :class:`Clock` to
    hand to the engine. ``wall`` starts at ``epoch_s``, ``monotonic`` at 0."""

    def __init__(self, epoch_s: float = 1_764_547_200.0) -> None:
        self.epoch_s = epoch_s
        self.elapsed_s = 0.0
        self.clock = Clock(wall=lambda: self.epoch_s + self.elapsed_s, monotonic=self.monotonic)

    def monotonic(self) -> float:
        return self.elapsed_s

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock does not go back ({seconds} s)")
        self.elapsed_s += seconds
