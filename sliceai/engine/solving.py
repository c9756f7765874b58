"""Allocation solvers the live loop can use, behind one small protocol.

:class:`SliceSolverAdapter` wraps :class:`sliceai.solver.SliceSolver` (the LP);
:class:`HeadroomSolver` is a dependency-free stand-in (demand quantile, clipped
to floors, grants and maxima, scaled down to fit each link) used when the LP
solver is not installed and as a simple fake in tests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from sliceai.engine.grants import guarantees_bps, maxima_bps, protected_floor_bps
from sliceai.policy import Policy


@dataclass(frozen=True)
class Allocation:
    """Solver output: ``rates_bps`` ``(n_slices, 2)`` bit/s and one explanation per slice."""

    rates_bps: npt.NDArray[np.float64]
    explanations: tuple[str, ...]
    note: str = ""


class PlanSolver(Protocol):
    def solve(
        self,
        levels: npt.NDArray[np.float64],
        quantiles: npt.NDArray[np.float64],
        previous: Allocation | None,
        reserved_bps: npt.NDArray[np.float64],
    ) -> Allocation:
        """Allocate for the next interval.

        ``levels`` ``(Q,)``; ``quantiles`` ``(n_slices, 2, Q)`` bit/s demand quantiles;
        ``previous`` the last plan's allocation (for churn damping) or None;
        ``reserved_bps`` ``(n_slices, 2)`` bit/s of MEC grants each slice must get.
        Raises on failure; the loop then falls back.
        """
        ...


SolverFactory = Callable[[Policy], PlanSolver]


def risk_quantile(
    policy: Policy, levels: npt.NDArray[np.float64], quantiles: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Each slice's demand quantile at level ``1 - risk``, ``(n_slices, 2)`` bit/s.

    Exact when ``levels`` contains every ``1 - risk`` (as :func:`quantile_levels` makes
    sure), else interpolated between neighbouring levels.
    """
    targets = np.array([1.0 - s.risk for s in policy.slices])
    n = len(targets)
    idx = np.clip(np.searchsorted(levels, targets), 0, len(levels) - 1)
    out = np.array(quantiles[np.arange(n), :, idx], dtype=np.float64)
    for i in np.flatnonzero(~np.isclose(levels[idx], targets)):
        for d in range(2):
            out[i, d] = np.interp(targets[i], levels, quantiles[i, d])
    return out


def guarantees_only(
    policy: Policy, reserved_bps: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """The fail-safe: each slice's floor plus its grants, ``(n_slices, 2)`` bit/s."""
    return protected_floor_bps(policy, reserved_bps)


class HeadroomSolver:
    """Give each slice its ``1 - risk`` demand quantile within [floor, max]; shrink to fit links.

    Where a link is over-subscribed, the part above each slice's floor is scaled
    down by the same factor for every slice on the link.
    """

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.floors = guarantees_bps(policy)
        self.maxima = maxima_bps(policy)
        self.incidence = policy.incidence.astype(bool)
        self.capacity = np.array([link.capacity for link in policy.topology.links])

    def solve(
        self,
        levels: npt.NDArray[np.float64],
        quantiles: npt.NDArray[np.float64],
        previous: Allocation | None,
        reserved_bps: npt.NDArray[np.float64],
    ) -> Allocation:
        floor = np.minimum(self.floors + reserved_bps, self.maxima)
        want = np.clip(
            risk_quantile(self.policy, levels, quantiles), floor, np.maximum(self.maxima, floor)
        )
        extra = want - floor
        scale = np.ones_like(want)
        for li in range(len(self.capacity)):
            members = self.incidence[li]
            for d in range(2):
                spare = self.capacity[li] - floor[members, d].sum()
                asked = extra[members, d].sum()
                if asked > max(spare, 0.0):
                    factor = max(spare, 0.0) / asked
                    scale[members, d] = np.minimum(scale[members, d], factor)
        rates = floor + extra * scale
        notes = tuple(
            "demand above what the links can carry: scaled down" if (scale[i] < 1).any() else ""
            for i in range(len(self.policy.slices))
        )
        return Allocation(rates, notes, "headroom solver")


class SliceSolverAdapter:
    """:class:`sliceai.solver.SliceSolver` behind :class:`PlanSolver`."""

    def __init__(self, policy: Policy) -> None:
        from sliceai.solver import SliceSolver

        self.policy = policy
        self._solver = SliceSolver(policy)
        self._previous: Any = None

    def solve(
        self,
        levels: npt.NDArray[np.float64],
        quantiles: npt.NDArray[np.float64],
        previous: Allocation | None,
        reserved_bps: npt.NDArray[np.float64],
    ) -> Allocation:
        from sliceai.solver import DemandForecast

        demand = DemandForecast.from_quantiles(levels, quantiles)
        plan = self._solver.solve(
            demand,
            previous=self._previous if previous is not None else None,
            reserved_bps=reserved_bps,
        )
        self._previous = plan
        rates = np.asarray(plan.rates_bps, dtype=np.float64)
        return Allocation(rates, _explanations(self.policy, plan.explanations))


def _explanations(policy: Policy, raw: object) -> tuple[str, ...]:
    if isinstance(raw, Mapping):
        return tuple(str(raw.get(name, "") or "") for name in policy.slice_names)
    if isinstance(raw, Sequence) and not isinstance(raw, str):
        return tuple(str(x or "") for x in raw)
    return ("",) * len(policy.slices)


def default_solver_factory(policy: Policy) -> PlanSolver:
    """The LP solver if :mod:`sliceai.solver` has ``SliceSolver``, else :class:`HeadroomSolver`."""
    try:
        return SliceSolverAdapter(policy)
    except ImportError:
        return HeadroomSolver(policy)
