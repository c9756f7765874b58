"""Solver-backed allocators: quantile forecasts in, one solver plan per interval out.

:class:`QuantilePlanner` is the shared piece: it takes per-interval quantile
forecasts ``(n, n_slices, 2, Q)`` and runs :class:`sliceai.solver.SliceSolver`
interval by interval, warm-starting each solve from the previous plan (which
also prices reconfiguration). ``rolling-quantile`` here and the forecaster's
``sliceai`` allocator both feed it.

- ``rolling-quantile``: at interval ``t`` the empirical quantiles, at
  :data:`ROLLING_LEVELS` plus each slice's ``1 - risk``, of the last
  ``window`` intervals before ``t`` (default 300). Interval 0 of a replay has
  no history and gets the static allocation.
- ``oracle``: the exact demand of interval ``t`` as a point forecast, solved
  by the same solver but without the reconfiguration price (no previous plan),
  so it never holds a rate above demand: ``max(demand, floor)`` within the cap
  and the links' capacity. With enough capacity no allocator can lose fewer
  bits or reserve fewer idle ones, which makes its cost the lower bound.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from sliceai.policy import Policy
from sliceai.replay.allocators import _clean, _PolicyAllocator
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


class RollingQuantileAllocator(_PolicyAllocator):
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
        self.history = np.zeros((0, len(policy.slices), 2))  # the last window intervals

    def allocate_chunk(self, load: FloatArray) -> FloatArray:
        u = _clean(load)
        n = u.shape[0]
        out = np.empty_like(u)
        ext = np.concatenate([self.history, u], axis=0)
        h = self.history.shape[0]
        first = 0
        if h == 0:  # the replay's first interval: nothing seen yet
            out[0] = self.static
            first = 1
        # Rows whose window is not yet full: quantiles of what there is (short loop).
        short_end = min(n, max(first, self.window - h))
        for t in range(first, short_end):
            past = ext[: h + t]
            q = np.quantile(past, self.levels, axis=0).transpose(1, 2, 0)
            out[t] = self.planner.plan(q[np.newaxis])[0]
        if short_end < n:
            # Window for row t is ext[h + t - window : h + t].
            windows = sliding_window_view(ext[:-1], self.window, axis=0)  # (m, S, 2, W)
            rows = windows[h + short_end - self.window : h + n - self.window]
            q = np.quantile(rows, self.levels, axis=-1).transpose(1, 2, 3, 0)
            out[short_end:] = self.planner.plan(q)
        self.history = ext[-self.window :].copy()
        return out


class OracleAllocator(_PolicyAllocator):
    """Sees interval ``t``'s demand exactly and solves for it: the lower bound."""

    name = "oracle"

    def start(
        self, policy: Policy, trace_slices: tuple[str, ...], interval_s: float, start_time: float
    ) -> None:
        super().start(policy, trace_slices, interval_s, start_time)
        self.planner = QuantilePlanner(policy, (0.5,), warm=False)

    def allocate_chunk(self, load: FloatArray) -> FloatArray:
        return self.planner.plan_point(_clean(load))
