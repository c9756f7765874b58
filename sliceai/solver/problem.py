"""A policy as the arrays the solver and admission control work on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from sliceai.policy import DIRECTIONS
from sliceai.solver.demand import DemandForecast, SolverError

if TYPE_CHECKING:
    from sliceai.policy import Policy

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int_]


@dataclass(frozen=True, eq=False)
class PolicyArrays:
    """Per-slice and per-link numbers of a policy, in policy order.

    ``floor_bps``, ``cap_bps`` (inf = none): ``(n_slices, 2)`` bit/s (DL, UL);
    ``guaranteed`` ``(n_slices,)`` bool; ``risk`` ``(n_slices,)``;
    ``priority`` ``(n_slices,)`` int (1 most important); ``incidence``
    ``(n_links, n_slices)`` bool; ``capacity_bps`` ``(n_links,)`` bit/s per direction.
    """

    floor_bps: FloatArray
    cap_bps: FloatArray
    guaranteed: BoolArray
    risk: FloatArray
    priority: IntArray
    incidence: BoolArray
    capacity_bps: FloatArray

    @classmethod
    def of(cls, policy: Policy) -> PolicyArrays:
        slices = policy.slices
        floor = np.array(
            [[s.guaranteed_bps(d) for d in DIRECTIONS] for s in slices], dtype=np.float64
        )
        cap = np.array([[s.maximum_bps(d) for d in DIRECTIONS] for s in slices], dtype=np.float64)
        return cls(
            floor_bps=floor,
            cap_bps=cap,
            guaranteed=np.array([s.is_guaranteed for s in slices], dtype=bool),
            risk=np.array([s.risk for s in slices], dtype=np.float64),
            priority=np.array([s.priority_level for s in slices], dtype=np.int_),
            incidence=np.asarray(policy.incidence, dtype=bool),
            capacity_bps=np.array(
                [link.capacity for link in policy.topology.links], dtype=np.float64
            ),
        )

    @property
    def n_slices(self) -> int:
        return int(self.floor_bps.shape[0])

    @property
    def reach_bps(self) -> FloatArray:
        """The most each slice could ever get, ``(n_slices, 2)`` bit/s: its maximum, or the
        capacity of its tightest link when that is lower (the largest link for a slice on
        none)."""
        links = np.where(self.incidence, self.capacity_bps[:, None], np.inf).min(axis=0)
        links = np.where(np.isfinite(links), links, self.capacity_bps.max(initial=0.0))
        return np.asarray(np.minimum(self.cap_bps, links[:, None]))

    def check_reserved(self, reserved_bps: object) -> FloatArray:
        """Validate grants per slice, ``(n_slices, 2)`` bit/s >= 0; None means none."""
        if reserved_bps is None:
            return np.zeros((self.n_slices, 2))
        r = np.asarray(reserved_bps, dtype=np.float64)
        if r.shape != (self.n_slices, 2):
            raise SolverError(f"reserved_bps must have shape ({self.n_slices}, 2), got {r.shape}")
        if not np.all(np.isfinite(r)) or np.any(r < 0):
            raise SolverError("reserved_bps must be finite and >= 0 bit/s")
        return r

    def targets(
        self, demand: DemandForecast, reserved: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """``(floor, target)`` ``(n_slices, 2)`` bit/s with grants added, both capped.

        The target of a guaranteed slice is its ``1 - risk`` demand quantile or
        its floor, whichever is higher, plus its grants (counted on top of the
        forecast, which errs towards keeping guarantees when the forecast already
        contains the granted traffic). Other slices are protected to their floor.
        """
        return self.targets_at(demand.quantile(1.0 - self.risk), reserved)

    def targets_at(
        self, risk_quantile: FloatArray, reserved: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """:meth:`targets` given each slice's ``1 - risk`` quantile ``(n_slices, 2)`` bit/s."""
        floor = np.minimum(self.floor_bps + reserved, self.cap_bps)
        q = np.asarray(risk_quantile, dtype=np.float64)
        target = np.where(self.guaranteed[:, None], np.maximum(q, self.floor_bps) + reserved, floor)
        return floor, np.minimum(target, self.cap_bps)
