"""Allocation solver and admission control (pure: no torch, grpc or os-ken).

See :mod:`sliceai.solver.solver` for the formulation.
"""

from sliceai.solver.admission import (
    AllocationDirection,
    Decision,
    GrantRequest,
    GrantState,
    RequestType,
    Shortfall,
    admit,
    modify,
    release,
)
from sliceai.solver.demand import DEFAULT_LEVELS, DemandForecast, SolverError
from sliceai.solver.plan import DirectionExplanation, Plan, SliceExplanation
from sliceai.solver.solver import SliceSolver, allocate

__all__ = [
    "DEFAULT_LEVELS",
    "AllocationDirection",
    "Decision",
    "DemandForecast",
    "DirectionExplanation",
    "GrantRequest",
    "GrantState",
    "Plan",
    "RequestType",
    "Shortfall",
    "SliceExplanation",
    "SliceSolver",
    "SolverError",
    "admit",
    "allocate",
    "modify",
    "release",
]
