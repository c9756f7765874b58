"""Per-slice and total metrics of one allocator's replay, accumulated chunk by chunk.

Definitions (per slice; a direction's problem counts for the slice):

- SLA violation in an interval: (a) shortfall: the bits served in the interval
  fall short of the bits offered by more than :data:`SHORTFALL_TOLERANCE` (1 %)
  of them; (b) delay: the queueing delay is above the slice's latency budget
  (which defaults to its 5QI packet delay budget); (c) loss: the bits dropped
  are more than the 5QI packet error rate times the bits there were to send.
  ``violation_rate`` is the fraction (0..1) of intervals with a violation.
- ``unservable_intervals``: intervals in which no allocation within the policy
  could serve the slice's demand: in either direction the demand is above the
  most the policy lets the slice have (:func:`servable_limit_bps`: its maximum,
  and on each link it crosses the capacity less the other slices' guaranteed
  floors). The same for every allocator.
- ``violation_rate_servable``: violations among the other, servable, intervals
  over their number (``null`` when there are none); ``violation_rate`` counts
  every interval. A backlog carried in from an unservable interval can still
  make a servable one violate.
- ``unserved_bits``: bits dropped (lost, never delivered).
- ``p50_delay_ms`` / ``p99_delay_ms``: percentiles over intervals of the
  slice's queueing delay (the worse direction), read off a log histogram
  (:data:`DELAY_BINS_PER_DECADE` bins per decade from 1 us; about 2 % resolution).
- ``overprovisioning``: bits allocated / bits served (``null`` when nothing was served).
- ``reconfigurations``: intervals whose allocation (either direction) differs
  from the interval before by more than 1e-6 relative.
- ``cost`` (DeepCog-style): ``alpha x unserved_bits + overprovisioned_bits``
  where ``overprovisioned_bits`` sums ``max(0, allocation - demand) x interval``
  and ``alpha = 128 / priority`` (priority 1 -> 128, priority 90 -> 1.42): a bit
  lost is worth ``alpha`` bits of idle reservation.
- Totals: sums over slices; ``violation_rate`` is the mean over slices and
  ``any_violation_rate`` the fraction of intervals in which some slice violated;
  ``link_utilisation``: mean over intervals of bits carried / capacity, per link and direction.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from sliceai.policy import Policy
from sliceai.replay.linkmodel import QueueStep
from sliceai.solver.problem import PolicyArrays

FloatArray = npt.NDArray[np.float64]

SHORTFALL_TOLERANCE = 0.01
RECONFIG_RTOL = 1e-6
DELAY_BINS_PER_DECADE = 50
DELAY_MIN_MS = 1e-3
DELAY_DECADES = 9  # 1 us .. 1000 s
CAUSES = ("shortfall", "delay", "loss")
SERVABLE_RTOL = 1e-9  # demand this close above the limit still counts as servable (rounding)


def alpha_of(priority: int) -> float:
    """DeepCog weight of a lost bit against an idle reserved bit, from a 3GPP priority level."""
    return 128.0 / priority


def servable_limit_bps(policy: Policy) -> FloatArray:
    """The most the policy lets each slice have at once, ``(n_slices, 2)`` bit/s: its
    maximum, and on every link it crosses the capacity less the other slices' floors."""
    a = PolicyArrays.of(policy)
    on_link = a.incidence.astype(np.float64) @ a.floor_bps  # (L, 2) floors per link
    room = a.capacity_bps[:, None, None] - on_link[:, None, :] + a.floor_bps[None]  # (L, S, 2)
    room = np.where(a.incidence[:, :, None], room, np.inf).min(axis=0)
    out: FloatArray = np.minimum(a.cap_bps, room)
    return out


def _edges() -> FloatArray:
    n = DELAY_BINS_PER_DECADE * DELAY_DECADES
    out: FloatArray = DELAY_MIN_MS * 10.0 ** (np.arange(n + 1) / DELAY_BINS_PER_DECADE)
    return out


DELAY_EDGES_MS = _edges()


class MetricsAccumulator:
    """Streams one allocator's replay outcome into the metrics of the module doc."""

    def __init__(
        self, policy: Policy, interval_s: float, shortfall_tolerance: float = SHORTFALL_TOLERANCE
    ) -> None:
        n_slices, n_links = len(policy.slices), len(policy.topology.links)
        self.policy = policy
        self.interval_s = interval_s
        self.tolerance = shortfall_tolerance
        self.budget_ms = np.array([s.latency_budget_ms for s in policy.slices])
        self.per = np.array([s.five_qi.characteristics.per for s in policy.slices])
        self.alpha = np.array([alpha_of(s.priority_level) for s in policy.slices])
        self.capacity = np.array([link.capacity for link in policy.topology.links])
        self.servable_limit = servable_limit_bps(policy) * (1 + SERVABLE_RTOL)
        self.intervals = 0
        self.violations = np.zeros(n_slices, dtype=np.int64)
        self.unservable = np.zeros(n_slices, dtype=np.int64)
        self.servable_violations = np.zeros(n_slices, dtype=np.int64)
        self.causes = np.zeros((n_slices, len(CAUSES)), dtype=np.int64)
        self.any_violation = 0
        self.offered = np.zeros(n_slices)
        self.served = np.zeros(n_slices)
        self.unserved = np.zeros(n_slices)
        self.allocated = np.zeros(n_slices)
        self.overprovisioned = np.zeros(n_slices)
        self.reconfigurations = np.zeros(n_slices, dtype=np.int64)
        self.last_rates: FloatArray | None = None
        self.delay_hist = np.zeros((n_slices, len(DELAY_EDGES_MS) + 1), dtype=np.int64)
        self.link_utilisation_sum = np.zeros((n_links, 2))

    def update(
        self, demand_bps: FloatArray, rates_bps: FloatArray, queue: QueueStep, link_bits: FloatArray
    ) -> None:
        """Add ``n`` intervals: demand and effective rates ``(n, S, 2)`` bit/s, the queue
        outcome (shapes ``(n, S, 2)``) and the bits carried per link ``(n, L, 2)``."""
        n = demand_bps.shape[0]
        if n == 0:
            return
        dt = self.interval_s
        offered = np.nan_to_num(demand_bps) * dt
        allocated = rates_bps * dt
        delay_ms = queue.delay_s * 1000.0
        with np.errstate(divide="ignore", invalid="ignore"):
            shortfall = (offered - queue.served) > self.tolerance * offered
            late = delay_ms > self.budget_ms[np.newaxis, :, np.newaxis] * (1 + 1e-9)
            loss_frac = np.where(queue.available > 0, queue.dropped / queue.available, 0.0)
            lossy = loss_frac > self.per[np.newaxis, :, np.newaxis]
        shortfall_s = shortfall[:, :, 0] | shortfall[:, :, 1]  # (n, S): either direction
        late_s = late[:, :, 0] | late[:, :, 1]
        lossy_s = lossy[:, :, 0] | lossy[:, :, 1]
        violated = shortfall_s | late_s | lossy_s
        unservable = (offered > self.servable_limit * dt).any(axis=2)  # (n, S)
        self.intervals += n
        self.violations += violated.sum(0)
        self.unservable += unservable.sum(0)
        self.servable_violations += (violated & ~unservable).sum(0)
        self.causes += np.stack([shortfall_s.sum(0), late_s.sum(0), lossy_s.sum(0)], axis=-1)
        self.any_violation += int(violated.any(1).sum())
        self.offered += _slice_sum(offered)
        self.served += _slice_sum(queue.served)
        self.unserved += _slice_sum(queue.dropped)
        self.allocated += _slice_sum(allocated)
        self.overprovisioned += _slice_sum(np.maximum(allocated - offered, 0.0))
        prev = rates_bps[:1] if self.last_rates is None else self.last_rates[np.newaxis]
        seq = np.concatenate([prev, rates_bps], axis=0)
        step = np.abs(np.diff(seq, axis=0))
        changed = step > RECONFIG_RTOL * np.maximum(np.abs(seq[:-1]), 1.0)
        self.reconfigurations += (changed[:, :, 0] | changed[:, :, 1]).sum(0)
        self.last_rates = rates_bps[-1].copy()
        worst = np.maximum(delay_ms[:, :, 0], delay_ms[:, :, 1])  # (n, S)
        n_bins = self.delay_hist.shape[1]
        bins = np.where(worst > 0, np.searchsorted(DELAY_EDGES_MS, worst, side="right"), 0)
        flat = (bins + n_bins * np.arange(worst.shape[1])[np.newaxis]).ravel()
        self.delay_hist += np.bincount(flat, minlength=self.delay_hist.size).reshape(
            self.delay_hist.shape
        )
        cap = self.capacity[np.newaxis, :, np.newaxis] * dt
        self.link_utilisation_sum += link_bits.sum(0) / cap[0]

    @staticmethod
    def _percentile(hist: npt.NDArray[np.int64], q: float) -> float:
        total = int(hist.sum())
        if total == 0:
            return 0.0
        k = int(np.searchsorted(np.cumsum(hist), q * total, side="left"))
        if k == 0:
            return 0.0
        edges = DELAY_EDGES_MS
        if k >= len(edges):
            return float(edges[-1])
        lo = edges[k - 1]
        hi = edges[k] if k < len(edges) else edges[-1]
        return float(np.sqrt(lo * hi))

    def summary(self) -> dict[str, Any]:
        """``{"total": {...}, "slices": {SLICE: {...}}}`` with the metrics of the module doc."""
        n = max(self.intervals, 1)
        slices: dict[str, dict[str, Any]] = {}
        cost = self.alpha * self.unserved + self.overprovisioned
        for i, name in enumerate(self.policy.slice_names):
            slices[name] = {
                "violation_rate": float(self.violations[i] / n),
                "violations_by_cause": {
                    c: float(self.causes[i, j] / n) for j, c in enumerate(CAUSES)
                },
                "unservable_intervals": int(self.unservable[i]),
                "violation_rate_servable": _ratio(
                    self.servable_violations[i], self.intervals - self.unservable[i]
                ),
                "unserved_bits": float(self.unserved[i]),
                "p50_delay_ms": self._percentile(self.delay_hist[i], 0.5),
                "p99_delay_ms": self._percentile(self.delay_hist[i], 0.99),
                "overprovisioning": _ratio(self.allocated[i], self.served[i]),
                "reconfigurations": int(self.reconfigurations[i]),
                "cost": float(cost[i]),
                "offered_bits": float(self.offered[i]),
                "served_bits": float(self.served[i]),
                "overprovisioned_bits": float(self.overprovisioned[i]),
                "alpha": float(self.alpha[i]),
            }
        pooled = self.delay_hist.sum(0)
        util = self.link_utilisation_sum / n
        total = {
            "violation_rate": float(self.violations.mean() / n),
            "any_violation_rate": float(self.any_violation / n),
            "unserved_bits": float(self.unserved.sum()),
            "p50_delay_ms": self._percentile(pooled, 0.5),
            "p99_delay_ms": self._percentile(pooled, 0.99),
            "overprovisioning": _ratio(self.allocated.sum(), self.served.sum()),
            "reconfigurations": int(self.reconfigurations.sum()),
            "cost": float(cost.sum()),
            "offered_bits": float(self.offered.sum()),
            "served_bits": float(self.served.sum()),
            "overprovisioned_bits": float(self.overprovisioned.sum()),
            "link_utilisation": {
                link: {"dl": float(util[li, 0]), "ul": float(util[li, 1])}
                for li, link in enumerate(self.policy.link_names)
            },
        }
        return {"total": total, "slices": slices}


def _slice_sum(x: FloatArray) -> FloatArray:
    """Sum over intervals and directions of ``(n, S, 2)`` -> ``(S,)`` (contiguous-axis first)."""
    out: FloatArray = x.reshape(x.shape[0], -1).sum(0).reshape(x.shape[1], 2).sum(1)
    return out


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den > 0 else None
