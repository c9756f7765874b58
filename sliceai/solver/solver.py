"""Risk-aware allocation of link capacity to slices, one LP per direction.

Per interval and direction (DL and UL are independent: links are full
duplex), each slice s gets one rate ``x[s]`` that holds on every link it
crosses. The forecaster gives each slice a predictive distribution of its
demand ``D[s]``; the plan maximises the priority-weighted expected served
traffic less a price on reserved capacity,
``sum_s (w_s E[min(D_s, x_s)] - c x_s)``, subject to each link's capacity, with

- the slice maximum as a hard cap,
- the floor (guaranteed throughput quota plus admitted MEC grants) and, for
  guaranteed slices, the ``1 - risk`` demand quantile as soft lower bounds
  whose penalties are ranked by priority (all floors above all quantile
  guarantees), so a shortage degrades the least important first and never
  raises,
- a small L1 cost on the change from the previous plan (no meter churn for
  gains under 2 %).

The price ``c`` (``RESERVE_COST``) is what makes the plan give capacity back:
it stops a best-effort slice at the quantile where one more bit/s is worth
less than it costs to hold (the DeepCog trade-off between unserved and
overprovisioned traffic), while the guarantee bonuses keep guaranteed slices
at their ``1 - risk`` quantile whatever the price.

``E[min(D, x)]`` is concave with slope ``P(D > x)``, and so is every other
term; :mod:`sliceai.solver.formulation` merges them into one concave
piecewise-linear function per slice, with breakpoints at the forecast
quantiles, and writes the problem as an LP with one column per segment and one
row per link. :mod:`sliceai.solver.lp` then solves it exactly and cheaply:
links that cannot bind are dropped, a single binding link per slice is a
fractional knapsack solved greedily, and only the remainder goes to HiGHS,
restricted to the segments near each slice's price and proven optimal by
the duals. :class:`SliceSolver` keeps the policy's arrays, the last link
prices and each direction's last reduced LP between intervals to warm-start
that restriction (the LP is updated in place and HiGHS goes on from its
optimal basis), and solves the two directions' HiGHS runs side by side on two
threads for large policies (HiGHS releases the GIL; the rest stays on the
caller's thread, in numba-compiled loops, :mod:`sliceai.solver.kernels`).

Improvement over the straightforward form (one column per quantile segment
and hard guarantee rows with slack columns): guarantees, floors and churn
need no extra rows or columns because they are just more breakpoints of the
same concave function, so the LP is a pure packing problem whose structure
the three steps above exploit.
"""

from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from sliceai.solver.demand import DemandForecast, SolverError
from sliceai.solver.formulation import (
    BEST_EFFORT_BONUS,
    Segments,
    build_segments,
    priority_weight,
    tier_bonuses,
)
from sliceai.solver.highs_model import ReducedLP, new_highs
from sliceai.solver.lp import DirectionProblem, solve_directions
from sliceai.solver.plan import Plan, fit_capacity
from sliceai.solver.problem import PolicyArrays

if TYPE_CHECKING:
    from sliceai.policy import Policy

FloatArray = npt.NDArray[np.float64]

#: Policies with at least this many slices solve DL and UL on two threads (when the
#: machine has two cores); below it the thread hand-off costs more than it saves.
PARALLEL_SLICES = 128


@functools.cache
def _pool() -> ThreadPoolExecutor | None:
    """Two worker threads for HiGHS runs, shared by every solver, or None on a
    one-core machine."""
    if (os.cpu_count() or 1) < 2:
        return None
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="sliceai-solver")


class SliceSolver:
    """Solves successive intervals for one policy, reusing its arrays, its HiGHS
    instances, the last link prices and the last reduced LPs. One solve at a time
    per instance (a lock makes concurrent calls wait). Each plan is optimal, but where
    an interval has several optima which one comes back can depend on the intervals
    solved before; a fresh solver (or :func:`allocate`) given the same input always
    returns the same plan."""

    def __init__(self, policy: Policy, parallel: bool | None = None) -> None:
        """``parallel``: solve DL and UL on two threads; None: when the policy has at
        least :data:`PARALLEL_SLICES` slices and the machine two cores."""
        self.policy = policy
        if parallel is None:
            parallel = len(policy.slices) >= PARALLEL_SLICES
        self._pool = _pool() if parallel else None
        self.arrays = PolicyArrays.of(policy)
        self.weight = priority_weight(self.arrays.priority)
        self.scale = float(self.arrays.capacity_bps.max())
        self._prices: list[FloatArray | None] = [None, None]
        self._highs = [new_highs(), new_highs()]  # one per direction, reused each interval
        self._models: list[ReducedLP | None] = [None, None]  # last reduced LPs, kept warm
        self._lock = threading.Lock()

    @property
    def parallel(self) -> bool:
        """Whether DL and UL solve on two threads."""
        return self._pool is not None

    def segments(
        self,
        demand: DemandForecast,
        previous: Plan | None = None,
        reserved_bps: object = None,
        target_levels: FloatArray | None = None,
    ) -> tuple[list[Segments], FloatArray, FloatArray, FloatArray]:
        """Each direction's LP: ``([dl, ul] segments, floor, target, reserved)``.

        ``floor``, ``target``, ``reserved``: ``(n_slices, 2)`` bit/s.
        """
        a = self.arrays
        demand.check_policy(self.policy)
        reserved = a.check_reserved(reserved_bps)
        prev = self._previous_rates(previous)
        levels = self._target_levels(target_levels)
        risk_q = demand.quantile(levels)
        risk_q = np.where(np.isinf(risk_q), a.reach_bps, risk_q)  # level 1: all it may get
        floor, target = a.targets_at(risk_q, reserved)
        points, slopes = demand.breakpoints()
        guaranteed = a.guaranteed[:, None] & (target > 0)
        # Slices without a guarantee are covered to their 1 - risk quantile from spare
        # capacity only (a small bonus, below every guarantee tier).
        q = np.minimum(risk_q, a.cap_bps)
        best_effort = ~a.guaranteed[:, None] & (q > floor)
        lp_target = np.where(best_effort, q, target)
        f_bonus = np.empty((2, a.n_slices))
        g_bonus = np.empty((2, a.n_slices))
        for d in range(2):
            f_bonus[d], g = tier_bonuses(a.priority, floor[:, d] > 0, guaranteed[:, d])
            g_bonus[d] = np.where(best_effort[:, d], BEST_EFFORT_BONUS, g)
        # Both directions in one pass: rows [0, n) are DL, [n, 2n) UL.
        n = a.n_slices
        both = build_segments(
            points.transpose(1, 0, 2).reshape(2 * n, -1),
            slopes.transpose(1, 0, 2).reshape(2 * n, -1),
            np.tile(self.weight, 2),
            floor.T.ravel(),
            f_bonus.ravel(),
            lp_target.T.ravel(),
            g_bonus.ravel(),
            a.cap_bps.T.ravel(),
            None if prev is None else prev.T.ravel(),
            self.scale,
        )
        out = [Segments(both.lengths[:n], both.slopes[:n], self.scale)]
        out.append(Segments(both.lengths[n:], both.slopes[n:], self.scale))
        return out, floor, target, reserved

    def solve(
        self,
        demand: DemandForecast,
        previous: Plan | None = None,
        reserved_bps: object = None,
        target_levels: FloatArray | None = None,
    ) -> Plan:
        """Plan the next interval.

        ``demand``: forecast for this policy's slices. ``previous``: the plan in
        force (for the churn cost). ``reserved_bps``: admitted grants per slice,
        ``(n_slices, 2)`` bit/s, added to floors and guarantees (see
        :meth:`sliceai.solver.admission.GrantState.reserved_bps`). ``target_levels``:
        ``(n_slices, 2)`` the demand quantile level each slice is covered to, in (0, 1]
        (default ``1 - risk``; 1 covers all the slice may get: its maximum or its
        tightest link).
        Raises :class:`SolverError` on malformed input, never on shortage.
        """
        a = self.arrays
        segs, floor, target, reserved = self.segments(demand, previous, reserved_bps, target_levels)
        capacity = a.capacity_bps / self.scale
        rates = np.empty((a.n_slices, 2))
        desire = np.empty((a.n_slices, 2))
        with self._lock:  # the HiGHS instances and last prices are this solver's state
            problems = [
                DirectionProblem(
                    segs[d],
                    a.incidence,
                    capacity,
                    self._prices[d],
                    None if previous is None else previous.rates_bps[:, d] / self.scale,
                    self._highs[d],
                    self._models[d],
                )
                for d in range(2)
            ]
            self._models = [None, None]  # a failed solve leaves no half-updated model
            results = solve_directions(problems, self._pool)
            for d, result in enumerate(results):
                if result.method == "highs":
                    self._prices[d] = result.prices
                self._models[d] = result.model
        methods = []
        for d, result in enumerate(results):
            rates[:, d] = result.rates * self.scale
            desire[:, d] = segs[d].desire * self.scale
            methods.append(result.method)
        rates = fit_capacity(np.maximum(rates, 0.0), a.incidence, a.capacity_bps)
        return Plan(
            policy_name=self.policy.name,
            slice_names=self.policy.slice_names,
            link_names=self.policy.link_names,
            rates_bps=rates,
            floor_bps=floor,
            target_bps=target,
            cap_bps=a.cap_bps,
            desire_bps=desire,
            reserved_bps=reserved,
            incidence=a.incidence,
            capacity_bps=a.capacity_bps,
            previous_bps=None if previous is None else previous.rates_bps,
            demand=demand,
            methods=(methods[0], methods[1]),
        )

    def _target_levels(self, levels: FloatArray | None) -> FloatArray:
        if levels is None:
            return np.asarray(1.0 - self.arrays.risk)
        lv = np.asarray(levels, dtype=np.float64)
        if lv.shape != (self.arrays.n_slices, 2):
            raise SolverError(
                f"target_levels must have shape ({self.arrays.n_slices}, 2), got {lv.shape}"
            )
        if not np.all((lv > 0) & (lv <= 1)):
            raise SolverError("target_levels must lie in (0, 1]")
        return lv

    def _previous_rates(self, previous: Plan | None) -> FloatArray | None:
        if previous is None:
            return None
        if previous.slice_names != self.policy.slice_names:
            raise SolverError(
                f"previous plan is for slices {', '.join(previous.slice_names)}, "
                f"not policy {self.policy.name}'s {', '.join(self.policy.slice_names)}"
            )
        return previous.rates_bps


def allocate(policy: Policy, demand: DemandForecast, previous: Plan | None = None) -> Plan:
    """One-shot :meth:`SliceSolver.solve` (no warm start kept)."""
    return SliceSolver(policy).solve(demand, previous)
