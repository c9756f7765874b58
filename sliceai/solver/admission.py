"""Admission control for MEC bandwidth requests (ETSI GS MEC 015 BwInfo semantics).

A MEC application asks for a fixed allocation (bit/s) for its own traffic
(``requestType`` 0, the whole app) or one session (1), downlink, uplink or
both, inside a slice. An admitted grant raises that slice's floor and its
guarantee target by the granted rate on every link the slice crosses, so it is
counted against capacity exactly as the solver will count it
(:meth:`GrantState.reserved_bps` feeds :meth:`SliceSolver.solve`).

The check per link and direction serves every slice's protected rate (its
target: floor plus grants, or for a guaranteed slice its ``1 - risk`` demand
quantile plus grants, see :meth:`PolicyArrays.targets`) from the link's
capacity in the solver's order: all floors by priority (lower number first),
then the guarantees above the floors by priority. A request is accepted
only if, with it, every slice on every link the requesting slice crosses
still gets its whole target. Otherwise the :class:`Decision` names the slices
that would be short and by how much (the least important ones first lose out,
which is what the solver would do).

All state objects are frozen; functions return new ones (the service persists
them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from sliceai.solver.demand import DemandForecast, SolverError
from sliceai.solver.problem import PolicyArrays

if TYPE_CHECKING:
    from sliceai.policy import Policy
    from sliceai.solver.plan import Plan

FloatArray = npt.NDArray[np.float64]


class AllocationDirection(str, Enum):
    """MEC 015 ``allocationDirection``: ``"00"`` downlink, ``"01"`` uplink, ``"10"`` both."""

    DL = "00"
    UL = "01"
    BOTH = "10"

    @property
    def mask(self) -> tuple[bool, bool]:
        """(DL, UL) covered."""
        return (self is not AllocationDirection.UL, self is not AllocationDirection.DL)


class RequestType(int, Enum):
    """MEC 015 ``requestType``: 0 application-specific, 1 session-specific."""

    APP = 0
    SESSION = 1


@dataclass(frozen=True)
class GrantRequest:
    """One bandwidth request. ``fixed_allocation_bps`` > 0 applies to each covered direction."""

    request_id: str
    app_ins_id: str
    slice: str
    fixed_allocation_bps: float
    direction: AllocationDirection = AllocationDirection.BOTH
    request_type: RequestType = RequestType.APP

    def rates(self) -> tuple[float, float]:
        """(DL, UL) bit/s this grant reserves."""
        dl, ul = self.direction.mask
        return (self.fixed_allocation_bps if dl else 0.0, self.fixed_allocation_bps if ul else 0.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (MEC 015 codes for direction and request type)."""
        return {
            "request_id": self.request_id,
            "app_ins_id": self.app_ins_id,
            "slice": self.slice,
            "fixed_allocation_bps": self.fixed_allocation_bps,
            "direction": self.direction.value,
            "request_type": int(self.request_type),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GrantRequest:
        """Inverse of :meth:`to_dict`; SolverError on missing or bad fields."""
        try:
            return cls(
                request_id=str(data["request_id"]),
                app_ins_id=str(data["app_ins_id"]),
                slice=str(data["slice"]),
                fixed_allocation_bps=float(data["fixed_allocation_bps"]),
                direction=AllocationDirection(data.get("direction", "10")),
                request_type=RequestType(int(data.get("request_type", 0))),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SolverError(f"bad grant request {dict(data)!r}: {exc}") from None


@dataclass(frozen=True, eq=False)
class GrantState:
    """Standing grants plus the protected rate of every slice without grants.

    ``base_target_bps``: ``(n_slices, 2)`` bit/s, each slice's target (floor, or
    ``1 - risk`` quantile for guaranteed slices) before grants, from the
    latest forecast or plan. ``grants``: by request id, in admission order.
    """

    policy_name: str
    base_target_bps: FloatArray
    grants: tuple[GrantRequest, ...] = ()
    _ids: frozenset[str] = field(default=frozenset(), repr=False)

    def __post_init__(self) -> None:
        base = np.array(self.base_target_bps, dtype=np.float64)  # a private, read-only copy
        base.setflags(write=False)
        object.__setattr__(self, "base_target_bps", base)

    @classmethod
    def from_demand(
        cls,
        policy: Policy,
        demand: DemandForecast | None = None,
        grants: tuple[GrantRequest, ...] = (),
    ) -> GrantState:
        """Targets from a forecast; without one, guaranteed floors only."""
        if demand is None:
            return cls.from_risk_quantile(policy, None, grants)
        demand.check_policy(policy)
        return cls.from_risk_quantile(
            policy, demand.quantile(1.0 - PolicyArrays.of(policy).risk), grants
        )

    @classmethod
    def from_risk_quantile(
        cls,
        policy: Policy,
        risk_quantile_bps: FloatArray | None,
        grants: tuple[GrantRequest, ...] = (),
    ) -> GrantState:
        """Targets from each slice's ``1 - risk`` demand quantile ``(n_slices, 2)`` bit/s
        (what a live loop keeps of its last forecast); None: guaranteed floors only.
        ``grants`` are taken as standing (not checked)."""
        arrays = PolicyArrays.of(policy)
        if risk_quantile_bps is None:
            base = np.minimum(arrays.floor_bps, arrays.cap_bps)
        else:
            q = np.asarray(risk_quantile_bps, dtype=np.float64)
            if q.shape != arrays.floor_bps.shape or not np.all(np.isfinite(q)) or np.any(q < 0):
                raise SolverError(
                    f"risk quantiles must be finite bit/s >= 0 of shape {arrays.floor_bps.shape}"
                )
            _, base = arrays.targets_at(q, np.zeros_like(arrays.floor_bps))
        state = cls(policy.name, base)
        for g in grants:
            state = state._with(g)
        return state

    @classmethod
    def from_plan(
        cls, policy: Policy, plan: Plan, grants: tuple[GrantRequest, ...] = ()
    ) -> GrantState:
        """Targets from a plan's (grants taken back out)."""
        if plan.slice_names != policy.slice_names:
            raise SolverError(f"plan is not for policy {policy.name}'s slices")
        state = cls(policy.name, np.maximum(plan.target_bps - plan.reserved_bps, 0.0))
        for g in grants:
            state = state._with(g)
        return state

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: policy name, base targets ``[[dl, ul], ...]`` bit/s, grants."""
        return {
            "policy": self.policy_name,
            "base_target_bps": self.base_target_bps.tolist(),
            "grants": [g.to_dict() for g in self.grants],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GrantState:
        """Inverse of :meth:`to_dict`; SolverError on missing or bad fields."""
        try:
            base = np.asarray(data["base_target_bps"], dtype=np.float64)
            grants = tuple(GrantRequest.from_dict(g) for g in data["grants"])
            name = str(data["policy"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SolverError(f"bad grant state: {exc}") from None
        if (
            base.ndim != 2
            or base.shape[1] != 2
            or not np.all(np.isfinite(base))
            or np.any(base < 0)
        ):
            raise SolverError(
                f"bad grant state: base_target_bps must be (n_slices, 2) >= 0, got {base.shape}"
            )
        return cls(name, base, grants, frozenset(g.request_id for g in grants))

    def with_demand(self, policy: Policy, demand: DemandForecast) -> GrantState:
        """The same grants against a new forecast (not re-checked: standing grants stay)."""
        return GrantState.from_demand(policy, demand, self.grants)

    def _with(self, grant: GrantRequest) -> GrantState:
        return replace(self, grants=(*self.grants, grant), _ids=self._ids | {grant.request_id})

    def grant(self, request_id: str) -> GrantRequest:
        for g in self.grants:
            if g.request_id == request_id:
                return g
        raise SolverError(f"no standing grant {request_id!r}")

    def reserved_bps(self, policy: Policy) -> FloatArray:
        """Granted rate per slice, ``(n_slices, 2)`` bit/s (pass to :meth:`SliceSolver.solve`)."""
        out = np.zeros((len(policy.slices), 2))
        for g in self.grants:
            out[policy.slice_index(g.slice)] += g.rates()
        return out


@dataclass(frozen=True)
class Shortfall:
    """A slice that would miss its target on a link: ``short_bps`` below it."""

    slice: str
    direction: str  # "dl" or "ul"
    link: str
    short_bps: float


@dataclass(frozen=True)
class Decision:
    """Outcome of :func:`admit` / :func:`modify`; ``state`` is the one to keep (old if refused)."""

    accepted: bool
    request: GrantRequest
    state: GrantState
    hurt: tuple[Shortfall, ...] = ()
    reason: str = ""


def admit(policy: Policy, state: GrantState, request: GrantRequest) -> Decision:
    """Accept ``request`` only if every standing guarantee still holds on its slice's links."""
    _check_request(policy, state, request)
    if request.request_id in state._ids:
        raise SolverError(f"request id {request.request_id!r} is already granted; use modify")
    return _decide(policy, state, state._with(request), request)


def release(state: GrantState, request_id: str) -> GrantState:
    """The state without grant ``request_id`` (SolverError if there is none)."""
    state.grant(request_id)
    kept = tuple(g for g in state.grants if g.request_id != request_id)
    return replace(state, grants=kept, _ids=state._ids - {request_id})


def modify(policy: Policy, state: GrantState, request: GrantRequest) -> Decision:
    """Replace the grant with ``request.request_id`` by ``request``, checked like a new one.

    Refused: the old grant stays as it was.
    """
    _check_request(policy, state, request)
    old = state.grant(request.request_id)
    if old.app_ins_id != request.app_ins_id:
        raise SolverError(f"grant {request.request_id!r} belongs to app {old.app_ins_id!r}")
    without = release(state, request.request_id)
    return _decide(policy, state, without._with(request), request)


def _check_request(policy: Policy, state: GrantState, request: GrantRequest) -> None:
    if state.policy_name != policy.name:
        raise SolverError(f"grant state is for policy {state.policy_name}, not {policy.name}")
    if request.slice not in policy.slice_names:
        raise SolverError(
            f"unknown slice {request.slice!r}; "
            f"policy {policy.name} has {', '.join(policy.slice_names)}"
        )
    rate = request.fixed_allocation_bps
    if not isinstance(rate, float | int) or not np.isfinite(rate) or rate <= 0:
        raise SolverError(f"fixed_allocation_bps must be a positive finite rate, got {rate!r}")
    if not request.request_id or not request.app_ins_id:
        raise SolverError("request_id and app_ins_id must be non-empty")


def _decide(
    policy: Policy, before: GrantState, after: GrantState, request: GrantRequest
) -> Decision:
    arrays = PolicyArrays.of(policy)
    si = policy.slice_index(request.slice)
    reserved = after.reserved_bps(policy)
    over_cap = (arrays.floor_bps[si] + reserved[si]) > arrays.cap_bps[si]
    if over_cap.any():
        which = "dl" if over_cap[0] else "ul"
        return Decision(
            False,
            request,
            before,
            reason=f"slice {request.slice}: floor plus grants would exceed its {which} maximum",
        )
    reserved_before = before.reserved_bps(policy)
    floor_after = arrays.floor_bps + reserved
    floor_before = arrays.floor_bps + reserved_before
    extra_after = np.maximum(after.base_target_bps + reserved - floor_after, 0.0)
    extra_before = np.maximum(before.base_target_bps + reserved_before - floor_before, 0.0)
    links = np.flatnonzero(arrays.incidence[:, si])
    order = np.lexsort((np.arange(arrays.n_slices), arrays.priority))  # most important first
    worse: list[Shortfall] = []
    short_anyway: list[Shortfall] = []
    for li in links:
        members = order[arrays.incidence[li, order]]
        tol = 1e-9 * arrays.capacity_bps[li]
        for d in np.flatnonzero(request.direction.mask):
            cap = arrays.capacity_bps[li]
            after_short = _tiered_shortfall(floor_after[members, d], extra_after[members, d], cap)
            before_short = _tiered_shortfall(
                floor_before[members, d], extra_before[members, d], cap
            )
            for j in np.flatnonzero(after_short > tol):
                item = Shortfall(
                    policy.slice_names[members[j]],
                    ("dl", "ul")[d],
                    policy.link_names[li],
                    float(after_short[j] - before_short[j]),
                )
                if after_short[j] - before_short[j] > tol:
                    worse.append(item)
                else:
                    short_anyway.append(replace(item, short_bps=float(after_short[j])))
    hurt = worse or short_anyway
    if hurt:
        names = ", ".join(sorted({h.slice for h in hurt}))
        worst = max(hurt, key=lambda h: h.short_bps)
        return Decision(
            False,
            request,
            before,
            tuple(hurt),
            f"would break the guarantee of {names} (worst: {worst.slice} {worst.direction} "
            f"short {worst.short_bps / 1e6:.3g} Mbit/s on {worst.link})",
        )
    return Decision(True, request, after, reason="every guarantee on the slice's links still holds")


def _tiered_shortfall(floor: FloatArray, extra: FloatArray, capacity: float) -> FloatArray:
    """What each slice misses of ``floor + extra`` (bit/s, most important first).

    Served as the solver ranks them: every floor in priority order, then every
    guarantee above its floor in priority order.
    """
    need = np.concatenate([floor, extra])
    before = np.cumsum(need) - need
    short = need - np.clip(capacity - before, 0.0, need)
    return np.asarray(short[: floor.size] + short[floor.size :])
