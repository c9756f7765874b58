"""Solver-backed allocators: quantile forecasts in, one solver plan per interval out.

:class:`QuantilePlanner` is the shared piece: it takes per-interval quantile
forecasts ``(n, n_slices, 2, Q)`` and runs :class:`sliceai.solver.SliceSolver`
interval by interval, warm-starting each solve from the previous plan (which
also prices reconfiguration). ``rolling-quantile`` here and the forecaster's
``sliceai`` allocator both feed it.

- ``rolling-quantile``: at interval ``t`` the empirical quantiles, at
  :data:`ROLLING_LEVELS` plus each slice's ``1 - risk``, of the last
  ``window`` intervals before ``t`` (default 300; fewer while the replay is
  younger than that). Interval 0 of a replay has no history and gets the
  static allocation.
- ``oracle``: the exact demand of interval ``t`` as a point forecast, solved
  by the same solver but without the reconfiguration price (no previous plan),
  so it never holds a rate above demand: ``max(demand, floor)`` within the cap
  and the links' capacity. With enough capacity no allocator can lose fewer
  bits or reserve fewer idle ones, which makes its cost the lower bound.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from sliceai.policy import Policy
from sliceai.replay.allocators import PolicyAllocator, clean_load
from sliceai.solver import DemandForecast, Plan, SliceSolver

FloatArray = npt.NDArray[np.float64]

ROLLING_LEVELS: tuple[float, ...] = (0.5, 0.75, 0.9, 0.95, 0.99)
DEFAULT_WINDOW = 300


class QuantilePlanner:
    """Runs the solver once per interval on quantile forecasts, with warm starts.

    ``levels``: ``(Q,)`` strictly increasing in (0, 1), shared by every interval.
    ``warm``: hand each solve the plan in force (the solver then prices reconfiguration,
    which keeps meters from following every dip); ``False`` solves every interval afresh.
    """

    def __init__(self, policy: Policy, levels: Sequence[float], warm: bool = True) -> None:
        self.policy = policy
        # Checks the levels once (SolverError if not strictly increasing inside (0, 1)).
        self.levels = DemandForecast.from_quantiles(
            levels, np.zeros((len(policy.slices), 2, len(levels)))
        ).levels
        self.solver = SliceSolver(policy)
        self.warm = warm
        self.previous: Plan | None = None  # the plan in force, for the next solve

    def plan(self, quantiles: FloatArray) -> FloatArray:
        """Rates ``(n, n_slices, 2)`` bit/s from quantiles ``(n, n_slices, 2, Q)`` bit/s.

        Row ``t`` is the plan for interval ``t``; quantiles are made non-decreasing along
        ``Q`` and non-negative before solving.
        """
        q = np.maximum.accumulate(np.maximum(np.nan_to_num(quantiles), 0.0), axis=-1)
        out = np.empty(q.shape[:3])
        solve = self.solver.solve
        levels = self.levels
        for t in range(q.shape[0]):
            # q is sanitised above (finite, >= 0, monotone): skip from_quantiles' checks.
            plan = solve(DemandForecast(levels, q[t]), previous=self.previous)
            self.previous = plan if self.warm else None
            out[t] = plan.rates_bps
        return out

    def plan_point(self, demand: FloatArray) -> FloatArray:
        """Rates ``(n, n_slices, 2)`` bit/s for known demand ``(n, n_slices, 2)`` bit/s."""
        d = np.maximum(np.nan_to_num(demand), 0.0)
        out = np.empty(d.shape)
        solve = self.solver.solve
        levels = np.array([0.5])
        for t in range(d.shape[0]):
            plan = solve(DemandForecast(levels, d[t][:, :, np.newaxis]), previous=self.previous)
            self.previous = plan if self.warm else None
            out[t] = plan.rates_bps
        return out


class RollingWindow:
    """Empirical quantiles of the last ``window`` values of ``k`` series, updated per interval.

    Each series keeps its window sorted (``bisect``), so adding a value and reading ``Q``
    quantiles cost O(window) memory moves in C plus O(Q) Python steps, instead of a
    partition of the whole window every interval. Quantiles interpolate linearly between
    order statistics (numpy's default ``linear`` method).
    """

    def __init__(self, k: int, window: int) -> None:
        self.window = window
        self.sorted: list[list[float]] = [[] for _ in range(k)]
        self.fifo: deque[list[float]] = deque()

    def __len__(self) -> int:
        return len(self.fifo)

    def push(self, row: list[float]) -> None:
        """Add one interval's values ``(k,)``; the oldest leaves once the window is full."""
        if len(self.fifo) == self.window:
            old = self.fifo.popleft()
            for values, v in zip(self.sorted, old, strict=True):
                del values[bisect_left(values, v)]
        self.fifo.append(row)
        for values, v in zip(self.sorted, row, strict=True):
            insort(values, v)

    def quantiles(self, levels: Sequence[float]) -> list[list[float]]:
        """``(k, Q)`` quantiles of the current window (which must not be empty)."""
        last = len(self.fifo) - 1
        spots = []
        for q in levels:
            pos = q * last
            lo = int(pos)
            spots.append((lo, min(lo + 1, last), pos - lo))
        return [[v[a] + (v[b] - v[a]) * f for a, b, f in spots] for v in self.sorted]


class RollingQuantileAllocator(PolicyAllocator):
    """Empirical quantiles of a trailing window fed to the solver (see module doc)."""

    name = "rolling-quantile"

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1 interval, got {window}")
        self.window = window

    def start(
        self, policy: Policy, trace_slices: tuple[str, ...], interval_s: float, start_time: float
    ) -> None:
        super().start(policy, trace_slices, interval_s, start_time)
        risk_levels = {round(1.0 - s.risk, 9) for s in policy.slices}
        self.levels = tuple(sorted(set(ROLLING_LEVELS) | risk_levels))
        self.planner = QuantilePlanner(policy, self.levels)
        self.past = RollingWindow(2 * len(policy.slices), self.window)

    def allocate_chunk(self, load: FloatArray) -> FloatArray:
        u = clean_load(load)
        n, n_slices = u.shape[0], u.shape[1]
        out = np.empty_like(u)
        q = np.empty((n, n_slices * 2, len(self.levels)))
        first = 0
        rows = u.reshape(n, -1).tolist()
        if not len(self.past):  # the replay's first interval: nothing seen yet
            out[0] = self.static
            self.past.push(rows[0])
            first = 1
        for t in range(first, n):
            q[t] = self.past.quantiles(self.levels)  # intervals before t only
            self.past.push(rows[t])
        if first < n:
            out[first:] = self.planner.plan(q[first:].reshape(n - first, n_slices, 2, -1))
        return out


class OracleAllocator(PolicyAllocator):
    """Sees interval ``t``'s demand exactly and solves for it: the lower bound."""

    name = "oracle"

    def start(
        self, policy: Policy, trace_slices: tuple[str, ...], interval_s: float, start_time: float
    ) -> None:
        super().start(policy, trace_slices, interval_s, start_time)
        self.planner = QuantilePlanner(policy, (0.5,), warm=False)

    def allocate_chunk(self, load: FloatArray) -> FloatArray:
        return self.planner.plan_point(clean_load(load))
