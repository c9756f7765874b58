"""The link model: one fluid queue per slice and direction, behind the slice's meter.

Per interval of ``T`` seconds a slice offers ``A = demand x T`` bits and its
meter serves at most ``C = rate x T`` bits. With backlog ``b`` carried from the
interval before::

    available = b + A
    served    = min(available, C)
    backlog   = min(available - served, B)        # B: buffer in bits
    dropped   = available - served - backlog

The buffer holds ``buffer_budgets x latency budget`` worth of traffic at the
slice's rate in that interval (default twice the budget, so a queue first runs
late, then loses). ``delay`` is the queueing delay of a bit arriving at the end
of the interval, ``backlog / rate`` (0 when there is no backlog).

Several links: allocations are per slice and the same on every link the slice
crosses (the solver's plans are shaped that way). The queue sits at the slice's
meter at the ingress; downstream links forward at the same rate without
queueing again. When the allocations on a link add up to more than its
capacity (an allocator that over-commits), every slice on that link is scaled
down by ``capacity / sum``, and a slice takes the smallest factor of the links
it crosses. Meters do not lend unused rate to other slices.

The recurrence ``b_t = min(B_t, max(0, b_{t-1} + (A_t - C_t)))`` is sequential,
but each step is a clamp ``f(b) = min(hi, max(lo, b + s))`` and clamps compose
into clamps, so :func:`fluid_queue` runs it as a blocked scan over time (about
``3 sqrt(n)`` vectorised passes for ``n`` intervals instead of ``n``).
:func:`fluid_queue_reference` is the plain per-interval loop it is checked against.

Volumes are float64 bits, rates bit/s, delays seconds unless a name says ms.
Fluid volumes under :data:`BIT_TOLERANCE` bits are rounding, not loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sliceai.policy import Policy

FloatArray = npt.NDArray[np.float64]

BIT_TOLERANCE = 1e-3
DEFAULT_BUFFER_BUDGETS = 2.0


@dataclass(frozen=True)
class QueueStep:
    """What the queues did over ``n`` intervals; every array has the input's shape ``(n, ...)``.

    ``available`` (backlog before plus arrivals), ``served``, ``dropped`` and ``backlog``
    (at the end of each interval) are bits; ``delay_s`` is the queueing delay in seconds of a
    bit arriving at the end of the interval.
    """

    available: FloatArray
    served: FloatArray
    dropped: FloatArray
    backlog: FloatArray
    delay_s: FloatArray


def _clamp_scan(step: FloatArray, hi: FloatArray, backlog0: FloatArray) -> FloatArray:
    """``b_t = min(hi_t, max(0, b_{t-1} + step_t))`` along axis 0 with ``b_{-1} = backlog0``.

    Blocked scan over the clamp functions ``f_t(b) = clip(b + s_t, lo_t, hi_t)`` (``lo_t = 0``):
    ``f_t o f_u`` is the clamp with ``s = s_u + s_t``, ``lo = clip(lo_u + s_t, lo_t, hi_t)``
    and ``hi = clip(hi_u + s_t, lo_t, hi_t)``. The ``n`` steps are cut into about ``sqrt(n)``
    blocks of ``m`` steps: (1) each block's composed clamp, ``m`` passes vectorised over the
    blocks; (2) the backlog entering each block, one cheap pass over the blocks; (3) the
    recurrence itself inside every block from that start, ``m`` passes vectorised over the
    blocks. O(n) work in about ``3 sqrt(n)`` numpy passes, and step (3) is the recurrence
    itself, so results match the per-interval loop to rounding.
    """
    n = step.shape[0]
    tail = step.shape[1:]
    m = max(1, int(np.ceil(np.sqrt(n))))
    n_blocks = -(-n // m)
    pad = n_blocks * m - n
    if pad:  # identity steps: s = 0, hi = inf keep any b >= 0 unchanged
        step = np.concatenate([step, np.zeros((pad, *tail))])
        hi = np.concatenate([hi, np.full((pad, *tail), np.inf)])
    # (m, n_blocks, ...): pass j touches step j of every block, contiguously.
    st = np.ascontiguousarray(np.swapaxes(step.reshape(n_blocks, m, *tail), 0, 1))
    ht = np.ascontiguousarray(np.swapaxes(hi.reshape(n_blocks, m, *tail), 0, 1))
    s_sum = np.zeros((n_blocks, *tail))
    lo_c = np.zeros((n_blocks, *tail))
    hi_c = np.full((n_blocks, *tail), np.inf)
    for j in range(m):
        s_j, h_j = st[j], ht[j]
        np.minimum(np.maximum(lo_c + s_j, 0.0), h_j, out=lo_c)
        np.minimum(np.maximum(hi_c + s_j, 0.0), h_j, out=hi_c)
        s_sum += s_j
    starts = np.empty((n_blocks, *tail))
    b = np.asarray(backlog0, dtype=np.float64)
    for i in range(n_blocks):
        starts[i] = b
        b = np.minimum(np.maximum(b + s_sum[i], lo_c[i]), hi_c[i])
    out = np.empty_like(st)
    b = starts
    for j in range(m):
        b = np.minimum(np.maximum(b + st[j], 0.0), ht[j])
        out[j] = b
    result: FloatArray = np.swapaxes(out, 0, 1).reshape(n_blocks * m, *tail)[:n]
    return result


def _finish(
    arrivals: FloatArray, service: FloatArray, backlog: FloatArray, backlog0: FloatArray, dt: float
) -> QueueStep:
    before = np.concatenate([backlog0[np.newaxis], backlog[:-1]], axis=0)
    available = before + arrivals
    served = np.minimum(available, service)
    dropped = available - served - backlog
    dropped[dropped < BIT_TOLERANCE] = 0.0
    backlog = np.where(backlog < BIT_TOLERANCE, 0.0, backlog)
    with np.errstate(divide="ignore", invalid="ignore"):
        delay = np.where(backlog > 0.0, backlog * dt / service, 0.0)
    return QueueStep(available, served, dropped, backlog, delay)


def fluid_queue(
    arrivals: FloatArray, service: FloatArray, buffer: FloatArray, backlog0: FloatArray, dt: float
) -> QueueStep:
    """Run the fluid queues over ``n`` intervals of ``dt`` seconds (vectorised scan).

    ``arrivals``, ``service`` (the most the meter lets through) and ``buffer`` are bits per
    interval, shape ``(n, ...)``; ``backlog0`` (shape ``(...)``) is the backlog before the
    first interval. Returns the per-interval :class:`QueueStep`.
    """
    arrivals = np.asarray(arrivals, dtype=np.float64)
    if arrivals.shape[0] == 0:
        empty = np.zeros_like(arrivals)
        return QueueStep(empty, empty, empty, empty, empty)
    backlog = _clamp_scan(arrivals - service, buffer, backlog0)
    return _finish(arrivals, service, backlog, backlog0, dt)


def fluid_queue_reference(
    arrivals: FloatArray, service: FloatArray, buffer: FloatArray, backlog0: FloatArray, dt: float
) -> QueueStep:
    """The same as :func:`fluid_queue`, one interval at a time (the definition; slow)."""
    backlog = np.empty_like(arrivals)
    b = np.asarray(backlog0, dtype=np.float64).copy()
    for t in range(arrivals.shape[0]):
        available = b + arrivals[t]
        served = np.minimum(available, service[t])
        b = np.minimum(available - served, buffer[t])
        backlog[t] = b
    return _finish(arrivals, service, backlog, backlog0, dt)


class LinkModel:
    """The links of a policy: capacity scaling and the per-slice queues, interval by interval.

    Stateful across calls of :meth:`step` (the backlog carries over), so a trace can be
    replayed chunk by chunk.
    """

    def __init__(
        self,
        policy: Policy,
        interval_s: float,
        buffer_budgets: float = DEFAULT_BUFFER_BUDGETS,
        reference: bool = False,
    ) -> None:
        if buffer_budgets <= 0:
            raise ValueError(f"buffer_budgets must be positive, got {buffer_budgets!r}")
        self.interval_s = float(interval_s)
        self.incidence = np.asarray(policy.incidence, dtype=bool)  # (L, S)
        self.incidence_f = self.incidence.astype(np.float64)
        self.capacity_bps = np.array([link.capacity for link in policy.topology.links])  # (L,)
        budget_s = np.array([s.latency_budget_ms for s in policy.slices]) / 1000.0
        self.buffer_s = buffer_budgets * budget_s  # (S,)
        self.backlog = np.zeros((len(policy.slices), 2))
        self.queue = fluid_queue_reference if reference else fluid_queue

    def effective_rates(self, rates_bps: FloatArray) -> FloatArray:
        """Allocations ``(n, S, 2)`` bit/s scaled down on over-committed links (see module doc)."""
        per_link = self.link_served(rates_bps)  # (n, L, 2) bit/s
        cap = self.capacity_bps[np.newaxis, :, np.newaxis]
        over = per_link > cap
        if not over.any():
            return rates_bps
        scale = np.where(over, cap / np.where(over, per_link, 1.0), 1.0)  # (n, L, 2)
        masked = np.where(
            self.incidence[np.newaxis, :, :, np.newaxis], scale[:, :, np.newaxis], 1.0
        )
        factor: FloatArray = masked.min(axis=1)  # (n, S, 2)
        return rates_bps * factor

    def step(self, demand_bps: FloatArray, rates_bps: FloatArray) -> tuple[QueueStep, FloatArray]:
        """Replay ``n`` intervals: demand and allocations ``(n, S, 2)`` bit/s (NaN demand = 0).

        Returns the queue outcome (bits, seconds; shapes ``(n, S, 2)``) and the effective
        rates ``(n, S, 2)`` bit/s the meters enforced.
        """
        rates = self.effective_rates(np.maximum(np.nan_to_num(rates_bps), 0.0))
        arrivals = np.nan_to_num(demand_bps) * self.interval_s
        service = rates * self.interval_s
        buffer = rates * self.buffer_s[np.newaxis, :, np.newaxis]  # bits: rate x seconds
        out = self.queue(arrivals, service, buffer, self.backlog, self.interval_s)
        if out.backlog.shape[0]:
            self.backlog = out.backlog[-1].copy()
        return out, rates

    def link_served(self, per_slice: FloatArray) -> FloatArray:
        """Per-link sums ``(n, L, 2)`` of a per-slice quantity ``(n, S, 2)`` (bits or bit/s)."""
        out: FloatArray = np.tensordot(per_slice, self.incidence_f, axes=([1], [1])).transpose(
            0, 2, 1
        )
        return out
