"""MEC 015 bandwidth grants: validation and admission control.

A grant reserves ``fixed_allocation_bps`` inside one slice, in one or both
directions. Reservations add up per slice into ``reserved_bps``
``(n_slices, 2)`` bit/s, which the solver gives each slice on top of its
guaranteed floor. Admission is the solver's (:func:`sliceai.solver.admit`): a
request is admitted only if the slice's floor plus grants stays within its
maximum and every slice on every link the slice crosses still gets its floor
plus grants and, when guaranteed, its ``1 - risk`` demand quantile.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sliceai.engine.errors import Exhausted, InvalidInput, NotFound
from sliceai.policy import DIRECTIONS, Policy
from sliceai.solver.admission import (
    AllocationDirection,
    GrantRequest,
    GrantState,
    RequestType,
    admit,
)
from sliceai.solver.demand import SolverError

IDENTIFIER = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_GRANT_BPS = 1e12
MAX_SESSION_FILTERS = 16
MAX_PORTS = 64
PROTOCOLS = ("", "TCP", "UDP", "SCTP", "ICMP")
REQUEST_TYPES = ("application", "session")
GRANT_DIRECTIONS = ("dl", "ul", "both")
_DIRECTION = {
    "dl": AllocationDirection.DL,
    "ul": AllocationDirection.UL,
    "both": AllocationDirection.BOTH,
}


@dataclass(frozen=True)
class SessionFilter:
    """MEC 015 sessionFilter entry; empty strings / tuples mean "any"."""

    source_ip: str = ""
    source_ports: tuple[int, ...] = ()
    dst_address: str = ""
    dst_ports: tuple[int, ...] = ()
    protocol: str = ""


@dataclass(frozen=True)
class BwRequest:
    """A validated MEC 015 BwInfo. ``slice`` is the policy slice name."""

    app_ins_id: str
    slice: str
    fixed_allocation_bps: int
    direction: str  # "dl", "ul" or "both"
    request_type: str = "application"  # or "session"
    app_name: str = ""
    priority: int = 0
    session_filters: tuple[SessionFilter, ...] = ()

    def rates_bps(self) -> tuple[float, float]:
        """Reserved (downlink, uplink) bit/s."""
        r = float(self.fixed_allocation_bps)
        return (
            r if self.direction in ("dl", "both") else 0.0,
            r if self.direction in ("ul", "both") else 0.0,
        )

    def same_target(self, other: BwRequest) -> bool:
        """Same app, slice, type, direction and filters: a duplicate request."""
        return (
            self.app_ins_id == other.app_ins_id
            and self.slice == other.slice
            and self.request_type == other.request_type
            and self.direction == other.direction
            and self.session_filters == other.session_filters
        )


@dataclass(frozen=True)
class Grant:
    """An admitted request with its server-assigned MEC 015 allocationId."""

    allocation_id: str
    request: BwRequest
    created_unix_s: float
    modified_unix_s: float

    @property
    def app_ins_id(self) -> str:
        return self.request.app_ins_id

    def to_json(self) -> dict[str, Any]:
        return asdict(self.request)

    @classmethod
    def from_json(
        cls, body: dict[str, Any], allocation_id: str, created: float, modified: float
    ) -> Grant:
        filters = tuple(
            SessionFilter(
                f["source_ip"],
                tuple(f["source_ports"]),
                f["dst_address"],
                tuple(f["dst_ports"]),
                f["protocol"],
            )
            for f in body.pop("session_filters")
        )
        return cls(allocation_id, BwRequest(**body, session_filters=filters), created, modified)


def resolve_slice(policy: Policy, label: str) -> str:
    """Policy slice name for a name or an S-NSSAI text ("SST" / "SST-SD"); NotFound otherwise."""
    if label in policy.slice_names:
        return label
    wanted = label.upper()
    for s in policy.slices:
        if str(s.snssai).upper() == wanted:
            return s.name
    raise NotFound(f"unknown slice {label[:64]!r}")


def _check_ip(value: str, field: str) -> str:
    if value == "":
        return value
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InvalidInput(f"{field}: {value[:64]!r} is not an IPv4 or IPv6 address") from None


def _check_ports(ports: tuple[int, ...], field: str) -> tuple[int, ...]:
    if len(ports) > MAX_PORTS:
        raise InvalidInput(f"{field}: {len(ports)} ports, at most {MAX_PORTS}")
    for p in ports:
        if not 1 <= p <= 65535:
            raise InvalidInput(f"{field}: port {p} outside 1..65535")
    return ports


def validate_request(policy: Policy, req: BwRequest) -> BwRequest:
    """Check every field of ``req``; return it with ``slice`` resolved to a policy name.

    Raises InvalidInput for malformed fields, NotFound for an unknown slice.
    """
    if not IDENTIFIER.match(req.app_ins_id):
        raise InvalidInput("app_ins_id: 1..128 characters of [A-Za-z0-9._:-] required")
    if len(req.app_name) > 256:
        raise InvalidInput("app_name: longer than 256 characters")
    if req.request_type not in REQUEST_TYPES:
        raise InvalidInput("request_type: must be APPLICATION_SPECIFIC or SESSION_SPECIFIC")
    if req.direction not in GRANT_DIRECTIONS:
        raise InvalidInput("allocation_direction: must be DOWNLINK, UPLINK or BOTH")
    if not 1 <= req.fixed_allocation_bps <= MAX_GRANT_BPS:
        raise InvalidInput(
            f"fixed_allocation_bps: {req.fixed_allocation_bps} outside 1 .. "
            f"{MAX_GRANT_BPS:.0e} bit/s"
        )
    if not 0 <= req.priority <= 255:
        raise InvalidInput(f"fixed_bw_priority: {req.priority} outside 0..255")
    if req.request_type == "session":
        if not 1 <= len(req.session_filters) <= MAX_SESSION_FILTERS:
            raise InvalidInput(
                f"session_filter: SESSION_SPECIFIC needs 1..{MAX_SESSION_FILTERS} entries"
            )
    elif req.session_filters:
        raise InvalidInput("session_filter: must be empty for APPLICATION_SPECIFIC")
    filters = []
    for i, f in enumerate(req.session_filters):
        where = f"session_filter[{i}]"
        protocol = f.protocol.upper()
        if protocol not in PROTOCOLS:
            raise InvalidInput(
                f"{where}.protocol: {f.protocol[:16]!r} is not TCP, UDP, SCTP or ICMP"
            )
        filters.append(
            SessionFilter(
                _check_ip(f.source_ip, f"{where}.source_ip"),
                _check_ports(f.source_ports, f"{where}.source_port"),
                _check_ip(f.dst_address, f"{where}.dst_address"),
                _check_ports(f.dst_ports, f"{where}.dst_port"),
                protocol,
            )
        )
    name = resolve_slice(policy, req.slice)
    return BwRequest(
        req.app_ins_id,
        name,
        req.fixed_allocation_bps,
        req.direction,
        req.request_type,
        req.app_name,
        req.priority,
        tuple(filters),
    )


def reserved_bps(
    policy: Policy, grants: list[Grant] | tuple[Grant, ...]
) -> npt.NDArray[np.float64]:
    """Sum of grants per slice and direction, ``(n_slices, 2)`` bit/s."""
    out = np.zeros((len(policy.slices), 2))
    for g in grants:
        if g.request.slice not in policy.slice_names:
            continue
        i = policy.slice_index(g.request.slice)
        dl, ul = g.request.rates_bps()
        out[i, 0] += dl
        out[i, 1] += ul
    return out


def guarantees_bps(policy: Policy) -> npt.NDArray[np.float64]:
    """Guaranteed floors, ``(n_slices, 2)`` bit/s (0 where none)."""
    return np.array(
        [[s.guaranteed_bps(d) for d in DIRECTIONS] for s in policy.slices], dtype=np.float64
    )


def maxima_bps(policy: Policy) -> npt.NDArray[np.float64]:
    """Maximum rates, ``(n_slices, 2)`` bit/s (inf where none)."""
    return np.array(
        [[s.maximum_bps(d) for d in DIRECTIONS] for s in policy.slices], dtype=np.float64
    )


def protected_floor_bps(
    policy: Policy, reserved: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """What no plan may go below: each slice's floor plus its grants, at most its maximum.

    ``reserved``: ``(n_slices, 2)`` bit/s of grants; returns the same shape. Grants
    count on top of the guaranteed floor, as :mod:`sliceai.solver` counts them.
    """
    return np.minimum(guarantees_bps(policy) + reserved, maxima_bps(policy))


def _as_request(grant: Grant) -> GrantRequest:
    r = grant.request
    return GrantRequest(
        request_id=grant.allocation_id or "<new>",
        app_ins_id=r.app_ins_id,
        slice=r.slice,
        fixed_allocation_bps=float(r.fixed_allocation_bps),
        direction=_DIRECTION[r.direction],
        request_type=RequestType.SESSION if r.request_type == "session" else RequestType.APP,
    )


def check_admission(
    policy: Policy,
    standing: Sequence[Grant],
    grant: Grant,
    risk_quantile_bps: npt.NDArray[np.float64] | None = None,
) -> None:
    """Raise Exhausted, naming the slices it would hurt, unless ``grant`` may join ``standing``.

    :func:`sliceai.solver.admit` decides: with the grant, every slice on the links
    of the grant's slice must still get its floor plus grants and, for guaranteed
    slices, its ``1 - risk`` demand quantile (``risk_quantile_bps`` ``(n_slices, 2)``
    bit/s from the latest forecast; None: floors only). A grant whose
    ``allocation_id`` is among ``standing`` replaces that one (modify).
    """
    others = tuple(_as_request(g) for g in standing if g.allocation_id != grant.allocation_id)
    try:
        state = GrantState.from_risk_quantile(policy, risk_quantile_bps, others)
        decision = admit(policy, state, _as_request(grant))
    except SolverError as exc:
        raise InvalidInput(str(exc)) from None
    if not decision.accepted:
        raise Exhausted(decision.reason)


def check_standing(policy: Policy, grants: Sequence[Grant]) -> None:
    """Raise Exhausted unless ``grants``, admitted one by one on floors only, all fit ``policy``."""
    for k, grant in enumerate(grants):
        check_admission(policy, grants[:k], grant)
