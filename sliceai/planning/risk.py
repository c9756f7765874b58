"""Online risk control: each slice's quantile level follows what actually happened.

A slice's risk ``alpha`` is a promise about the long-run share of intervals whose
demand exceeds the slice's allocation. A forecast alone cannot keep it on traffic
it was not trained on, so the planner closes the loop per slice, in the manner of
adaptive conformal inference (Gibbs and Candes, NeurIPS 2021). It keeps a
miscoverage ``a_t`` per slice (initially ``alpha``), covers both directions of the
slice to their demand quantile at level ``1 - a_t`` (at ``a_t <= 0``: to everything
the policy lets it have, its maximum or its tightest link), and after each interval::

    a_{t+1} = min(a_max, a_t + gamma * (alpha - err_t)),   gamma = GAIN * alpha

where ``err_t`` is 1 when the interval missed in either direction (the promise is the
slice's): it violated the SLA as the replay counts a violation (more than 1 % of its
demand not served in it, a queue behind the meter longer than the latency budget, or
demand lost), judged on the planner's own queue behind the meter. An
interval counts (updates ``a``) only when the policy could have served it: the slice
got the coverage it was planned to (no shortage on its links took it) and all that
arrived was within all the policy lets it have, in at least one direction (a
direction that does not count cannot make a miss); intervals without a measurement do
not count either.

**Guarantee.** For every sequence of demands whatsoever (adversarial included), over
the ``T`` intervals that count for a slice::

    (1 / T) * sum_t err_t  <=  alpha + (1 + GAIN) / (GAIN * T)

Proof: ``a`` only falls after a miss, by ``gamma * (1 - alpha) < gamma``, and a
counted interval planned at ``a_t <= 0`` cannot miss (its allocation covers all the
demand the policy admits), so ``a_t > -gamma`` always; clipping at ``a_max`` only
lowers ``a``. Summing the updates, ``gamma * sum_t (err_t - alpha) <= a_1 - a_{T+1}``
``< alpha + gamma``. With ``GAIN = 0.5`` the long-run miss rate is at most
``alpha + 3 / T``: within 3 % of a 1e-3 risk after 10^5 counted intervals.

``a_max`` is :data:`A_MAX` by default (``lowers``): the level also comes down where the
forecast over-covers, and the slice spends the risk it accepts; on the dev traces
(research/planning/NOTES.md) this was cheaper than the one-sided control on all three
scenarios with no slice over its risk. With ``lowers=False`` it is the risk itself (the
level never goes below ``1 - risk``: a forecast that covers more than it must is left
alone). A miss raises the level at once (by ``GAIN`` of the risk, in
miscoverage); quiet intervals lower it slowly (``gamma * alpha`` each), so the level
settles where misses come at the rate
the slice accepts, whatever the forecaster's own calibration.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: Step of the miscoverage update relative to the slice's risk.
GAIN = 0.5
#: Highest miscoverage (lowest level, 0.5: the median) the control may reach.
A_MAX = 0.5
#: Counted intervals the explanation reports misses over.
WINDOW = 300


class RiskControl:
    """Per slice miscoverage ``a`` (module docstring), ``(n_slices,)``; both directions of
    a slice are covered to the same level, and an interval misses when either does."""

    def __init__(
        self,
        slice_names: Sequence[str],
        risks: Sequence[float],
        gain: float = GAIN,
        lowers: bool = True,
    ) -> None:
        if not gain > 0:
            raise ValueError(f"gain must be > 0, got {gain}")
        self.slice_names = tuple(slice_names)
        self.alpha = np.asarray(risks, dtype=np.float64).copy()
        if not np.all((self.alpha > 0) & (self.alpha < 1)):
            raise ValueError("every risk must lie in (0, 1)")
        self.gamma = gain * self.alpha
        # Highest miscoverage: the risk itself unless the level may also go below 1 - risk.
        self.a_max = np.full(self.alpha.shape, A_MAX) if lowers else self.alpha.copy()
        self.miscoverage = self.alpha.copy()
        self.counted = np.zeros(self.alpha.shape, dtype=np.int64)
        self.misses = np.zeros(self.alpha.shape, dtype=np.int64)
        # Counted-interval ordinals of each slice's recent misses (for explanations).
        self._recent: list[deque[int]] = [deque() for _ in self.slice_names]

    def levels(self) -> FloatArray:
        """``(n_slices, 2)`` levels for the solver: ``1 - a``, and 1 where ``a <= 0``."""
        level = np.where(self.miscoverage <= 0, 1.0, 1.0 - self.miscoverage)
        return np.repeat(level[:, None], 2, axis=1)

    def update(self, missed: BoolArray, counts: BoolArray) -> None:
        """One interval's outcome per slice and direction, ``(n_slices, 2)``: ``missed``
        (it violated the SLA) and ``counts`` (the policy could have served it; both as the
        module docstring says). A slice's interval counts when a direction counts, and misses when a
        counted direction missed."""
        counting = np.asarray(counts, dtype=bool)
        err = (np.asarray(missed, dtype=bool) & counting).any(axis=1)
        counted = counting.any(axis=1)
        step = self.gamma * (self.alpha - err)
        self.miscoverage = np.where(
            counted, np.minimum(self.a_max, self.miscoverage + step), self.miscoverage
        )
        self.counted += counted
        self.misses += err
        for i in np.flatnonzero(err).tolist():
            self._recent[i].append(int(self.counted[i]))

    def recent_misses(self, i: int) -> int:
        """Misses of slice ``i`` in its last :data:`WINDOW` counted intervals."""
        recent = self._recent[i]
        while recent and recent[0] <= self.counted[i] - WINDOW:
            recent.popleft()
        return len(recent)

    def explain(self, i: int) -> str:
        """What the control did to slice ``i`` (empty while its level is ``1 - risk``)."""
        a, alpha = float(self.miscoverage[i]), float(self.alpha[i])
        if abs(a - alpha) <= 1e-3 * abs(alpha):  # np.isclose(rtol=1e-3, atol=0), without numpy
            return ""
        level = "all it may get" if a <= 0 else f"{1 - a:.6g}"
        how = "raised" if a < alpha else "lowered"
        seen = min(int(self.counted[i]), WINDOW)
        return (
            f"level {how} to {level} (risk {alpha:g}) after {self.recent_misses(i)} misses "
            f"in the last {seen} intervals"
        )

    # -- persistence ------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """JSON-ready state by slice name, for :meth:`restore` after a restart."""
        return {
            name: {
                "miscoverage": float(self.miscoverage[i]),
                "counted": int(self.counted[i]),
                "misses": int(self.misses[i]),
                "recent": list(self._recent[i]),
            }
            for i, name in enumerate(self.slice_names)
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Take over the state of the slices ``state`` has (others keep theirs); malformed
        entries raise ValueError and change nothing."""
        parsed = {}
        for i, name in enumerate(self.slice_names):
            entry = state.get(name)
            if entry is None:
                continue
            try:
                a = float(entry["miscoverage"])
                row = (a, int(entry["counted"]), int(entry["misses"]))
                recent = [int(x) for x in entry["recent"]]
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"risk state of {name!r}: {exc}") from None
            if not (np.isfinite(a) and a < 1 and row[1] >= 0 and 0 <= row[2] <= row[1]):
                raise ValueError(f"risk state of {name!r}: values out of range")
            parsed[i] = (row, recent)
        for i, ((a, counted, misses), recent) in parsed.items():
            self.miscoverage[i] = min(a, self.a_max[i])
            self.counted[i] = counted
            self.misses[i] = misses
            self._recent[i] = deque(recent[-WINDOW:])
