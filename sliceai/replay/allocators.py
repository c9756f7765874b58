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
- ``rolling-quantile``: empirical quantiles of the last 300 intervals fed to
  the solver (see :mod:`sliceai.replay.planning`).
- ``oracle``: the solver fed the exact demand of the interval itself: the lower
  bound every other allocator is measured against.

More allocators (the forecaster's ``sliceai``) join with :func:`register_allocator`;
:data:`LAZY_ALLOCATORS` names modules imported on demand that register themselves,
so this module never imports torch.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable
from itertools import accumulate

import numpy as np
import numpy.typing as npt

from sliceai.policy import DIRECTIONS, Policy
from sliceai.replay.errors import ReplayError

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


AllocatorFactory = Callable[[], Allocator]

ALLOCATORS: dict[str, AllocatorFactory] = {}
# name -> module whose import calls register_allocator(name, ...); tried on demand.
LAZY_ALLOCATORS: dict[str, str] = {"sliceai": "sliceai.forecast.allocator"}


def register_allocator(name: str, factory: AllocatorFactory) -> None:
    """Add (or replace) an allocator under ``name``."""
    ALLOCATORS[name] = factory


def _load_lazy(name: str) -> bool:
    module = LAZY_ALLOCATORS.get(name)
    if module is None:
        return False
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return name in ALLOCATORS


def allocator_names(include_lazy: bool = True) -> tuple[str, ...]:
    """Names of the allocators available here (lazy ones only when their module imports)."""
    if include_lazy:
        for name in LAZY_ALLOCATORS:
            if name not in ALLOCATORS:
                _load_lazy(name)
    return tuple(ALLOCATORS)


def make_allocator(name: str) -> Allocator:
    """A fresh allocator by name; :class:`ReplayError` for an unknown one."""
    if name not in ALLOCATORS and not _load_lazy(name):
        known = ", ".join(allocator_names())
        raise ReplayError(f"unknown allocator {name!r}; choose from {known}")
    return ALLOCATORS[name]()


# --- policy helpers ---------------------------------------------------------------------


def policy_bounds(policy: Policy) -> tuple[FloatArray, FloatArray]:
    """Guaranteed floors and maxima ``(n_slices, 2)`` bit/s (maximum ``inf`` when unset)."""
    floor = np.array([[s.guaranteed_bps(d) for d in DIRECTIONS] for s in policy.slices])
    cap = np.array([[s.maximum_bps(d) for d in DIRECTIONS] for s in policy.slices])
    return floor, cap


def fit_to_capacity(policy: Policy, rates: FloatArray) -> FloatArray:
    """Scale the above-floor part of ``rates`` ``(n, S, 2)`` so no link is over-committed.

    On a link whose allocations exceed its capacity, every member's rate above its
    guarantee shrinks by the same factor; a slice takes the smallest factor of its links.
    """
    floor, _ = policy_bounds(policy)
    inc = np.asarray(policy.incidence, dtype=np.float64)  # (L, S)
    cap = np.array([link.capacity for link in policy.topology.links])[np.newaxis, :, np.newaxis]
    above = np.maximum(rates - floor, 0.0)
    extra = np.einsum("ls,nsd->nld", inc, above)
    room = cap - np.einsum("ls,sd->ld", inc, floor)[np.newaxis]
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(extra > room, np.maximum(room, 0.0) / extra, 1.0)
    mask = np.asarray(policy.incidence, dtype=bool)[np.newaxis, :, :, np.newaxis]
    factor = np.where(mask, scale[:, :, np.newaxis], 1.0).min(axis=1)
    out: FloatArray = floor + above * factor
    return out


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
        from scipy.signal import lfilter  # 0.8 s to import: only when EWMA runs

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


# The name plug-ins imported before it was public.
_PolicyAllocator = PolicyAllocator


def _builtin() -> None:
    from sliceai.replay.planning import OracleAllocator, RollingQuantileAllocator

    register_allocator("static", StaticAllocator)
    register_allocator("proportional", ProportionalAllocator)
    register_allocator("ewma", EwmaAllocator)
    register_allocator("rolling-quantile", RollingQuantileAllocator)
    register_allocator("oracle", OracleAllocator)
