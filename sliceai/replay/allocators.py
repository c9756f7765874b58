"""Allocators the replay compares: one interface, a registry by name, the baselines.

Every allocator gets the trace in consecutive chunks and returns, per interval,
the rate of every slice and direction in bit/s (the same on every link the
slice crosses). Row ``t`` may depend only on intervals before ``t``; only the
oracle looks at interval ``t`` itself. Missing measurements (NaN) count as no
traffic. All baselines keep each slice between its guaranteed floor and its
maximum, and within link capacity (:func:`fit_to_capacity`).

- ``static``: the guarantees plus the rest of each link split in proportion to
  the slices' maximum rates (a slice without a maximum weighs as much as the
  link's capacity), water-filled so capped slices pass their surplus on; a slice
  on several links keeps the smallest of its shares. Never changes.
- ``proportional``: NexRAN-style: the spare capacity of each link above the
  guarantees is shared in proportion to each slice's use in the last interval;
  the meter is moved only when the new share differs by more than 5 % from the
  one in force (dead band).
- ``ewma``: an exponentially weighted moving average of past use (weight 0.3 on
  the newest interval) plus a 20 % margin.

The solver-backed allocators are in :mod:`sliceai.replay.planned` (``rolling-quantile``,
``sliceai``) and :mod:`sliceai.replay.oracle`; :mod:`sliceai.replay.registry` names them all.
"""

from __future__ import annotations

import abc
from itertools import accumulate

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter

from sliceai.policy import Policy
from sliceai.replay.errors import ReplayError
from sliceai.solver.plan import fit_capacity
from sliceai.solver.problem import PolicyArrays

FloatArray = npt.NDArray[np.float64]


class Allocator(abc.ABC):
    """Decides each interval's per-slice rates from the traffic seen so far."""

    name: str = ""

    @abc.abstractmethod
    def start(
        self, policy: Policy, trace_slices: tuple[str, ...], interval_s: float, start_time: float
    ) -> None:
        """Reset for a new replay. ``trace_slices`` names the load columns (policy order)."""

    @abc.abstractmethod
    def allocate_chunk(self, load: FloatArray) -> FloatArray:
        """Rates ``(n, n_slices, 2)`` bit/s for the next ``n`` intervals of ``load`` (same shape).

        Row ``t`` depends only on earlier chunks and rows ``< t`` (the oracle may use row ``t``).
        """


# --- policy helpers ---------------------------------------------------------------------


def policy_bounds(policy: Policy) -> tuple[FloatArray, FloatArray]:
    """Guaranteed floors and maxima ``(n_slices, 2)`` bit/s (maximum ``inf`` when unset)."""
    arrays = PolicyArrays.of(policy)
    return arrays.floor_bps, arrays.cap_bps


def fit_to_capacity(policy: Policy, rates: FloatArray) -> FloatArray:
    """``rates`` ``(n, S, 2)`` within every link's capacity, floors kept
    (:func:`sliceai.solver.plan.fit_capacity`)."""
    arrays = PolicyArrays.of(policy)
    return fit_capacity(rates, arrays.incidence, arrays.capacity_bps, arrays.floor_bps)


def static_rates(policy: Policy) -> FloatArray:
    """The ``static`` allocation ``(n_slices, 2)`` bit/s (split documented in the module)."""
    floor, cap = policy_bounds(policy)
    n_slices = len(policy.slices)
    best = np.full((n_slices, 2), np.inf)
    for li, link in enumerate(policy.topology.links):
        members = np.flatnonzero(policy.incidence[li])
        for d in range(2):
            x = floor[members, d].copy()
            top = cap[members, d]
            weight = np.where(np.isfinite(top), top, link.capacity)
            spare = link.capacity - x.sum()
            for _ in range(len(members) + 1):
                open_ = x < top - 1e-9
                if spare <= 1e-6 or not open_.any():
                    break
                add = spare * np.where(open_, weight, 0.0) / weight[open_].sum()
                new = np.minimum(x + add, top)
                spare -= float((new - x).sum())
                x = new
            best[members, d] = np.minimum(best[members, d], x)
    out: FloatArray = np.where(np.isfinite(best), best, floor)
    return out


def clean_load(load: FloatArray) -> FloatArray:
    """``load`` as float64 with missing measurements (NaN) as no traffic."""
    out: FloatArray = np.nan_to_num(np.asarray(load, dtype=np.float64), nan=0.0)
    return out


class PolicyAllocator(Allocator):
    """Base for allocators: ``start`` keeps the policy, ``floor`` and ``cap`` ``(S, 2)`` bit/s,
    the ``static`` fallback ``(S, 2)`` for intervals without history, and ``interval_s``."""

    def start(
        self, policy: Policy, trace_slices: tuple[str, ...], interval_s: float, start_time: float
    ) -> None:
        if len(trace_slices) != len(policy.slices):
            raise ReplayError(
                f"{self.name}: {len(trace_slices)} load columns for {len(policy.slices)} slices"
            )
        self.policy = policy
        self.interval_s = interval_s
        self.floor, self.cap = policy_bounds(policy)
        self.static = static_rates(policy)
        self.last_load: FloatArray | None = None  # (S, 2) the interval before the chunk

    def _previous(self, load: FloatArray) -> tuple[FloatArray, bool]:
        """Loads shifted by one interval ``(n, S, 2)``; flag: row 0 has no history at all."""
        first = self.last_load is None
        before = np.zeros_like(load[:1]) if self.last_load is None else self.last_load[np.newaxis]
        self.last_load = load[-1].copy()
        return np.concatenate([before, load[:-1]], axis=0), first


class StaticAllocator(PolicyAllocator):
    name = "static"

    def allocate_chunk(self, load: FloatArray) -> FloatArray:
        return np.broadcast_to(self.static, load.shape).copy()


def dead_band(targets: FloatArray, current: FloatArray, band: float) -> FloatArray:
    """Hold each series at its value in force until the target moves more than ``band`` away.

    ``targets`` ``(n, k)``, ``current`` ``(k,)`` the value in force before row 0; returns
    ``(n, k)``: row ``t`` is ``targets[t]`` where that differs from the value in force by
    more than ``band`` (relative), else the value in force. The recurrence is sequential:
    one C-level ``itertools.accumulate`` per series.
    """
    out = np.empty_like(targets)
    lo, hi = 1.0 - band, 1.0 + band

    def hold(held: float, v: float) -> float:
        return v if (v > held * hi or v < held * lo) else held

    for j, column in enumerate(targets.T.tolist()):
        out[:, j] = list(accumulate(column, hold, initial=float(current[j])))[1:]
    return out


class ProportionalAllocator(PolicyAllocator):
    """Spare capacity shared by last interval's use, with a dead band (see module doc)."""

    name = "proportional"

    def __init__(self, band: float = 0.05) -> None:
        self.band = band

    def start(
        self, policy: Policy, trace_slices: tuple[str, ...], interval_s: float, start_time: float
    ) -> None:
        super().start(policy, trace_slices, interval_s, start_time)
        self.in_force = self.static.copy()
        inc = np.asarray(policy.incidence, dtype=bool)
        self.incidence = inc
        capacity = np.array([link.capacity for link in policy.topology.links])
        self.spare = capacity[:, np.newaxis] - np.einsum("ls,sd->ld", inc.astype(float), self.floor)

    def allocate_chunk(self, load: FloatArray) -> FloatArray:
        used, first = self._previous(clean_load(load))
        inc = self.incidence.astype(np.float64)
        total = np.einsum("ls,nsd->nld", inc, used)  # (n, L, 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            per_bit = np.where(total > 0, self.spare[np.newaxis] / total, 0.0)
        share = np.where(
            self.incidence[np.newaxis, :, :, np.newaxis],
            per_bit[:, :, np.newaxis] * used[:, np.newaxis],
            np.inf,
        ).min(axis=1)  # (n, S, 2) extra above the floor, tightest link
        share = np.where(np.isfinite(share), share, 0.0)
        target = np.minimum(self.floor + share, self.cap)
        idle = (total == 0).any(axis=1)  # nothing used anywhere: keep the static split
        target = np.where(idle[:, np.newaxis], self.static, target)
        if first:
            target[0] = self.static
        n = load.shape[0]
        flat = dead_band(target.reshape(n, -1), self.in_force.reshape(-1), self.band)
        out = flat.reshape(target.shape)
        self.in_force = out[-1].copy()
        return out


class EwmaAllocator(PolicyAllocator):
    """EWMA of past use plus a margin (see module doc)."""

    name = "ewma"

    def __init__(self, weight: float = 0.3, margin: float = 0.2) -> None:
        self.weight = weight
        self.margin = margin

    def start(
        self, policy: Policy, trace_slices: tuple[str, ...], interval_s: float, start_time: float
    ) -> None:
        super().start(policy, trace_slices, interval_s, start_time)
        self.level: FloatArray | None = None  # EWMA after the last interval seen

    def allocate_chunk(self, load: FloatArray) -> FloatArray:
        u = clean_load(load)
        w = self.weight
        before = self.level
        # lfilter's state is (1 - w) x the previous average; the first average is u[0] itself.
        zi = ((1 - w) * (u[0] if before is None else before))[np.newaxis]
        level, _ = lfilter([w], [1.0, -(1 - w)], u, axis=0, zi=zi)
        prev = np.concatenate(
            [(self.static if before is None else before)[np.newaxis], level[:-1]], axis=0
        )
        self.level = level[-1].copy()
        target = (1 + self.margin) * prev
        if before is None:
            target[0] = self.static
        bounded = np.minimum(np.maximum(target, self.floor), self.cap)
        return fit_to_capacity(self.policy, bounded)
