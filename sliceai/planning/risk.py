"""Online risk control: each slice's quantile level follows what actually happened.

A slice's risk ``alpha`` is a promise about the long-run share of intervals whose
demand exceeds the slice's allocation. A forecast alone cannot keep it on traffic
it was not trained on, so the planner closes the loop per slice and direction, in
the manner of adaptive conformal inference (Gibbs and Candes, NeurIPS 2021). It
keeps a miscoverage ``a_t`` (initially ``alpha``), covers the slice to its demand
quantile at level ``1 - a_t`` (at ``a_t <= 0``: to everything the policy lets it
have, its maximum or its tightest link), and after each interval::

    a_{t+1} = min(a_max, a_t + gamma * (alpha - err_t)),   gamma = GAIN * alpha

where ``err_t`` is 1 when the interval missed: its demand, plus what was still queued
from the interval before, did not all pass the rate in force (the planner's queue
behind the meter did not clear). An interval counts (updates ``a``) only when the
policy could have served it: the slice got the coverage it was planned to (no
shortage on its links took it) and all that arrived was within all the policy lets it
have; intervals without a measurement do not count either.

**Guarantee.** For every sequence of demands whatsoever (adversarial included), over
the ``T`` intervals that count for a series::

    (1 / T) * sum_t err_t  <=  alpha + (1 + GAIN) / (GAIN * T)

Proof: ``a`` only falls after a miss, by ``gamma * (1 - alpha) < gamma``, and a
counted interval planned at ``a_t <= 0`` cannot miss (its allocation covers all the
demand the policy admits), so ``a_t > -gamma`` always; clipping at ``a_max`` only
lowers ``a``. Summing the updates, ``gamma * sum_t (err_t - alpha) <= a_1 - a_{T+1}``
``< alpha + gamma``. With ``GAIN = 0.5`` the long-run miss rate is at most
``alpha + 3 / T``: within 3 % of a 1e-3 risk after 10^5 counted intervals.

``a_max`` is the risk itself (the level never goes below ``1 - risk``: a forecast that
covers more than it must is left alone) unless ``lowers``, then :data:`A_MAX` (the
level also comes down where the forecast over-covers, and the slice spends the risk
it accepts). A miss raises the level at once (by ``GAIN`` of the risk, in
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
DIRECTION_NAMES = ("DL", "UL")


class RiskControl:
    """Per slice and direction miscoverage ``a`` (module docstring), ``(n_slices, 2)``."""

    def __init__(
        self,
        slice_names: Sequence[str],
        risks: Sequence[float],
        gain: float = GAIN,
        lowers: bool = False,
    ) -> None:
        if not gain > 0:
            raise ValueError(f"gain must be > 0, got {gain}")
        self.slice_names = tuple(slice_names)
        self.alpha = np.repeat(np.asarray(risks, dtype=np.float64)[:, None], 2, axis=1)
        if not np.all((self.alpha > 0) & (self.alpha < 1)):
            raise ValueError("every risk must lie in (0, 1)")
        self.gamma = gain * self.alpha
        # Highest miscoverage: the risk itself unless the level may also go below 1 - risk.
        self.a_max = np.full(self.alpha.shape, A_MAX) if lowers else self.alpha.copy()
        self.miscoverage = self.alpha.copy()
        self.counted = np.zeros(self.alpha.shape, dtype=np.int64)
        self.misses = np.zeros(self.alpha.shape, dtype=np.int64)
        # Counted-interval ordinals of the recent misses, per series (for explanations).
        self._recent: list[deque[int]] = [deque() for _ in range(self.alpha.size)]

    def levels(self) -> FloatArray:
        """``(n_slices, 2)`` levels for the solver: ``1 - a``, and 1 where ``a <= 0``."""
        return np.asarray(np.where(self.miscoverage <= 0, 1.0, 1.0 - self.miscoverage))

    def update(self, exceeded: BoolArray, counts: BoolArray) -> None:
        """One interval's outcome: ``exceeded`` demand above the rate in force, ``counts``
        the interval counts for that series (module docstring); both ``(n_slices, 2)``."""
        err = np.asarray(exceeded, dtype=bool) & counts
        step = self.gamma * (self.alpha - err)
        self.miscoverage = np.where(
            counts, np.minimum(self.a_max, self.miscoverage + step), self.miscoverage
        )
        self.counted += counts
        self.misses += err
        for k in np.flatnonzero(err.ravel()).tolist():
            self._recent[k].append(int(self.counted.flat[k]))

    def recent_misses(self, i: int, d: int) -> int:
        """Misses of slice ``i``, direction ``d``, in its last :data:`WINDOW` counted intervals."""
        recent = self._recent[2 * i + d]
        while recent and recent[0] <= self.counted[i, d] - WINDOW:
            recent.popleft()
        return len(recent)

    def explain(self, i: int) -> str:
        """What the control did to slice ``i`` (empty while its level is ``1 - risk``)."""
        parts = []
        for d, name in enumerate(DIRECTION_NAMES):
            a, alpha = self.miscoverage[i, d], self.alpha[i, d]
            if np.isclose(a, alpha, rtol=1e-3, atol=0.0):
                continue
            level = "all it may get" if a <= 0 else f"{1 - a:.6g}"
            how = "raised" if a < alpha else "lowered"
            seen = min(int(self.counted[i, d]), WINDOW)
            parts.append(
                f"{name} level {how} to {level} (risk {alpha:g}) after "
                f"{self.recent_misses(i, d)} misses in the last {seen} intervals"
            )
        return "; ".join(parts)

    # -- persistence ------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """JSON-ready state by slice name, for :meth:`restore` after a restart."""
        out: dict[str, Any] = {}
        for i, name in enumerate(self.slice_names):
            out[name] = [
                {
                    "miscoverage": float(self.miscoverage[i, d]),
                    "counted": int(self.counted[i, d]),
                    "misses": int(self.misses[i, d]),
                    "recent": list(self._recent[2 * i + d]),
                }
                for d in range(2)
            ]
        return out

    def restore(self, state: dict[str, Any]) -> None:
        """Take over the state of the slices ``state`` has (others keep theirs); malformed
        entries raise ValueError and change nothing."""
        parsed = {}
        for i, name in enumerate(self.slice_names):
            entry = state.get(name)
            if entry is None:
                continue
            try:
                rows = [
                    (
                        float(e["miscoverage"]),
                        int(e["counted"]),
                        int(e["misses"]),
                        [int(x) for x in e["recent"]],
                    )
                    for e in entry
                ]
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"risk state of {name!r}: {exc}") from None
            if len(rows) != 2 or not all(np.isfinite(r[0]) and r[0] < 1 for r in rows):
                raise ValueError(f"risk state of {name!r}: not two directions of valid values")
            parsed[i] = rows
        for i, rows in parsed.items():
            for d, (a, counted, misses, recent) in enumerate(rows):
                self.miscoverage[i, d] = min(a, self.a_max[i, d])
                self.counted[i, d] = counted
                self.misses[i, d] = misses
                self._recent[2 * i + d] = deque(recent[-WINDOW:])
