"""MEC 015 ``BwInfo`` / ``BwInfoDeltas`` / ``ProblemDetails`` and their mapping onto grants.

The models follow ETSI GS MEC 015 v2.1.1 (``BwManagementApi``, clauses 7.2.2-7.2.3)
field for field, with the spec's camelCase names as aliases; ``allocationId`` and
``appName`` (present in later versions of the API) are accepted and returned too.
Unknown fields are refused (400), so a misspelt optional field is never ignored.

Which slice a request reserves in (BwInfo names none) is decided by
:func:`slice_for`, in this order:

1. ``appName`` that names a policy slice (its name, or its S-NSSAI as ``SST`` /
   ``SST-SD``);
2. for SESSION_SPECIFIC requests, the one slice whose match rules surely match every
   ``sessionFilter`` entry (protocol, ports, addresses; DSCP and VLAN cannot be said
   in a session filter and are not checked); several slices: refused;
3. the policy's default slice, where unclassified traffic goes in the data plane;
4. otherwise refused (400), saying how to name a slice.

Nothing here imports FastAPI: the base install validates and maps without it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr

from sliceai.engine import (
    BwRequest,
    Conflict,
    EngineError,
    Exhausted,
    Forbidden,
    Grant,
    InvalidInput,
    NotFound,
    Precondition,
    SessionFilter,
    Unavailable,
)
from sliceai.engine.grants import MAX_PORTS, MAX_SESSION_FILTERS, resolve_slice
from sliceai.engine.limits import LimitExceeded
from sliceai.policy import Policy
from sliceai.policy.model import MatchRule

BASE_PATH = "/bwm/v1"
PROBLEM_JSON = "application/problem+json"
DIRECTION_FROM_MEC = {"00": "dl", "01": "ul", "10": "both"}
DIRECTION_TO_MEC = {v: k for k, v in DIRECTION_FROM_MEC.items()}
REQUEST_TYPE_FROM_MEC = {0: "application", 1: "session"}
REQUEST_TYPE_TO_MEC = {v: k for k, v in REQUEST_TYPE_FROM_MEC.items()}
#: IANA protocol numbers of the protocols a grant's session filter may name.
PROTOCOL_NUMBERS = {"ICMP": 1, "TCP": 6, "UDP": 17, "SCTP": 132}
PROTOCOL_NAMES = {str(n): name for name, n in PROTOCOL_NUMBERS.items()}
#: fixedBWPriority: the spec defines no values; its schemas' placeholders mean "none given".
PRIORITY_PLACEHOLDERS = ("SEE_DESCRIPTION", "SEE DESCRIPTION")
_DIGITS = re.compile(r"^[0-9]{1,15}$")


def _request_type(value: Any) -> Any:
    """0 / 1 (BwInfo: integer; BwInfoDeltas: the spec's schema says string): both taken."""
    if isinstance(value, bool):
        raise ValueError("requestType: 0 or 1, not a boolean")
    if isinstance(value, str) and value in ("0", "1"):
        return int(value)
    return value


RequestType = Annotated[Literal[0, 1], BeforeValidator(_request_type)]
Direction = Literal["00", "01", "10"]
Port = StrictStr | StrictInt


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class TimeStamp(_Model):
    """MEC 015 TimeStamp: Unix time in seconds and nanoseconds."""

    seconds: StrictInt = Field(ge=0, le=2**32 - 1)
    nano_seconds: StrictInt = Field(alias="nanoSeconds", ge=0, le=999_999_999)


class SessionFilterEntry(_Model):
    """One ``sessionFilter`` entry; absent fields mean "any"."""

    source_ip: StrictStr | None = Field(None, alias="sourceIp", max_length=64)
    source_port: list[Port] | None = Field(None, alias="sourcePort", max_length=MAX_PORTS)
    dst_address: StrictStr | None = Field(None, alias="dstAddress", max_length=64)
    dst_port: list[Port] | None = Field(None, alias="dstPort", max_length=MAX_PORTS)
    protocol: StrictStr | None = Field(None, max_length=16, description="protocol number")


class BwInfo(_Model):
    """MEC 015 BwInfo (clause 7.2.2): a bandwidth allocation."""

    time_stamp: TimeStamp | None = Field(None, alias="timeStamp")
    app_ins_id: StrictStr = Field(alias="appInsId", max_length=128)
    app_name: StrictStr | None = Field(None, alias="appName", max_length=256)
    allocation_id: StrictStr | None = Field(None, alias="allocationId", max_length=128)
    request_type: RequestType = Field(alias="requestType")
    session_filter: list[SessionFilterEntry] | None = Field(
        None, alias="sessionFilter", max_length=MAX_SESSION_FILTERS
    )
    fixed_bw_priority: StrictStr | None = Field(None, alias="fixedBWPriority", max_length=32)
    fixed_allocation: StrictStr = Field(
        alias="fixedAllocation", max_length=16, description="bit/s, decimal digits"
    )
    allocation_direction: Direction = Field(alias="allocationDirection")


class BwInfoDeltas(_Model):
    """MEC 015 BwInfoDeltas (clause 7.2.3): the fields a PATCH changes (JSON merge patch)."""

    app_ins_id: StrictStr = Field(alias="appInsId", max_length=128)
    app_name: StrictStr | None = Field(None, alias="appName", max_length=256)
    allocation_id: StrictStr | None = Field(None, alias="allocationId", max_length=128)
    request_type: RequestType = Field(alias="requestType")
    session_filter: list[SessionFilterEntry] | None = Field(
        None, alias="sessionFilter", max_length=MAX_SESSION_FILTERS
    )
    fixed_bw_priority: StrictStr | None = Field(None, alias="fixedBWPriority", max_length=32)
    fixed_allocation: StrictStr | None = Field(None, alias="fixedAllocation", max_length=16)
    allocation_direction: Direction | None = Field(None, alias="allocationDirection")


class ProblemDetails(_Model):
    """RFC 7807 problem, as MEC 015 returns for every error."""

    type: str | None = None
    title: str | None = None
    status: int | None = None
    detail: str | None = None
    instance: str | None = None


# -- BwInfo -> grant request ---------------------------------------------------------------


def _port(value: str | int, field: str) -> int:
    text = str(value)
    if not _DIGITS.match(text):
        raise InvalidInput(f"{field}: {text[:16]!r} is not a port number")
    return int(text)


def _protocol(value: str | None, field: str) -> str:
    if not value:
        return ""
    name = PROTOCOL_NAMES.get(value.strip(), value.strip().upper())
    if name not in PROTOCOL_NUMBERS:
        raise InvalidInput(
            f"{field}: {value[:16]!r} is not a protocol number of ICMP (1), TCP (6), "
            "UDP (17) or SCTP (132)"
        )
    return name


def session_filters(entries: Sequence[SessionFilterEntry] | None) -> tuple[SessionFilter, ...]:
    """The engine's session filters (ports as integers, protocol by name)."""
    out = []
    for i, e in enumerate(entries or ()):
        where = f"sessionFilter[{i}]"
        out.append(
            SessionFilter(
                e.source_ip or "",
                tuple(_port(p, f"{where}.sourcePort") for p in e.source_port or ()),
                e.dst_address or "",
                tuple(_port(p, f"{where}.dstPort") for p in e.dst_port or ()),
                _protocol(e.protocol, f"{where}.protocol"),
            )
        )
    return tuple(out)


def _bps(text: str) -> int:
    if not _DIGITS.match(text):
        raise InvalidInput(f"fixedAllocation: {text[:16]!r} is not a whole number of bit/s")
    return int(text)


def _priority(text: str | None) -> int:
    if text is None or text in PRIORITY_PLACEHOLDERS:
        return 0
    if not _DIGITS.match(text) or int(text) > 255:
        raise InvalidInput(f"fixedBWPriority: {text[:16]!r} is not a number 0..255")
    return int(text)


def _surely_matches(rule: MatchRule, f: SessionFilter) -> bool:
    """Every packet of the session ``f`` describes matches ``rule`` (DSCP/VLAN not checked)."""
    if rule.protocol is not None and rule.protocol.upper() != f.protocol:
        return False
    if rule.ports:
        ports = f.dst_ports + f.source_ports
        if not ports or not any(r.first <= p <= r.last for p in ports for r in rule.ports):
            return False
    if rule.ip_prefixes:
        addresses = [a for a in (f.dst_address, f.source_ip) if a]
        if not any(ipaddress.ip_address(a) in net for a in addresses for net in rule.ip_prefixes):
            return False
    return True


def slice_for(
    policy: Policy, app_name: str, request_type: str, filters: Sequence[SessionFilter]
) -> str:
    """The policy slice a request reserves in (see the module's docstring for the rules)."""
    if app_name:
        try:
            return resolve_slice(policy, app_name)
        except NotFound:
            pass  # an application's own name: the slice comes from the other rules
    if request_type == "session" and filters:
        found: set[str] = set()  # slices the entries fall in; "" for an unclassified entry
        for f in filters:
            try:
                hits = {s.name for s in policy.slices for r in s.match if _surely_matches(r, f)}
            except ValueError:  # an address that is no IP literal: validation says so later
                hits = set()
            found |= hits or {""}
        named = found - {""}
        if len(found) > 1:
            raise InvalidInput(
                "sessionFilter falls in several slices ("
                + ", ".join(sorted(n or "unclassified" for n in found))
                + "); an allocation is for one session in one slice: narrow the filter, or "
                "name the slice in appName"
            )
        if named:
            return named.pop()
    for s in policy.slices:
        if s.default:
            return s.name
    raise InvalidInput(
        "no slice for this allocation: give appName as a slice name or S-NSSAI "
        f"({', '.join(policy.slice_names[:8])}), or a sessionFilter that the policy's match "
        "rules classify, or mark a slice 'default: true' in the policy"
    )


def to_request(policy: Policy, info: BwInfo, slice_name: str | None = None) -> BwRequest:
    """The engine request for ``info`` (slice: ``slice_name``, else :func:`slice_for`)."""
    request_type = REQUEST_TYPE_FROM_MEC[info.request_type]
    filters = session_filters(info.session_filter)
    app_name = info.app_name or ""
    name = slice_name or slice_for(policy, app_name, request_type, filters)
    return BwRequest(
        app_ins_id=info.app_ins_id,
        slice=name,
        fixed_allocation_bps=_bps(info.fixed_allocation),
        direction=DIRECTION_FROM_MEC[info.allocation_direction],
        request_type=request_type,
        app_name=app_name,
        priority=_priority(info.fixed_bw_priority),
        session_filters=filters,
    )


# -- grant -> BwInfo -----------------------------------------------------------------------


def _filter_json(f: SessionFilter) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if f.source_ip:
        out["sourceIp"] = f.source_ip
    if f.source_ports:
        out["sourcePort"] = [str(p) for p in f.source_ports]
    if f.dst_address:
        out["dstAddress"] = f.dst_address
    if f.dst_ports:
        out["dstPort"] = [str(p) for p in f.dst_ports]
    if f.protocol:
        out["protocol"] = str(PROTOCOL_NUMBERS[f.protocol])
    return out


def bw_info_json(grant: Grant) -> dict[str, Any]:
    """The grant as a MEC 015 BwInfo (JSON object); ``timeStamp``: its last change."""
    r = grant.request
    seconds = int(grant.modified_unix_s)
    nanos = min(round((grant.modified_unix_s - seconds) * 1e9), 999_999_999)
    out: dict[str, Any] = {
        "timeStamp": {"seconds": seconds, "nanoSeconds": nanos},
        "appInsId": r.app_ins_id,
        "allocationId": grant.allocation_id,
        "requestType": REQUEST_TYPE_TO_MEC[r.request_type],
        "fixedAllocation": str(r.fixed_allocation_bps),
        "allocationDirection": DIRECTION_TO_MEC[r.direction],
    }
    if r.app_name:
        out["appName"] = r.app_name
    if r.priority:
        out["fixedBWPriority"] = str(r.priority)
    if r.session_filters:
        out["sessionFilter"] = [_filter_json(f) for f in r.session_filters]
    return out


def merged(grant: Grant, deltas: BwInfoDeltas) -> BwInfo:
    """The grant's BwInfo with ``deltas`` applied (JSON merge patch: given fields replace)."""
    base = bw_info_json(grant)
    patch = deltas.model_dump(by_alias=True, exclude_unset=True)
    return BwInfo.model_validate({**base, **patch})


def keeps_slice(grant: Grant, request_type: str, app_name: str, filters: Sequence[Any]) -> bool:
    """True when none of what decides the slice changed (the grant then stays in its slice)."""
    r = grant.request
    return (r.request_type, r.app_name, r.session_filters) == (
        request_type,
        app_name,
        tuple(filters),
    )


def etag(grant: Grant) -> str:
    """Strong entity tag of the grant's current state (If-Match on PUT / PATCH)."""
    state = [grant.allocation_id, repr(grant.modified_unix_s), grant.to_json()]
    digest = hashlib.blake2b(json.dumps(state, sort_keys=True).encode(), digest_size=12)
    return f'"{digest.hexdigest()}"'


def if_match_holds(header: str | None, grant: Grant) -> bool:
    """RFC 9110 If-Match (strong comparison): absent or ``*`` holds; else one tag must equal."""
    if header is None or header.strip() == "*":
        return True
    current = etag(grant)
    return any(tag.strip() == current for tag in header.split(","))


# -- errors ---------------------------------------------------------------------------------

#: Engine error -> (HTTP status, title). Admission refusals are 403, as MEC 015 describes
#: 403: "the operation is not allowed given the current status of the resource".
PROBLEMS: dict[type[EngineError], tuple[int, str]] = {
    InvalidInput: (400, "Bad Request"),
    NotFound: (404, "Not Found"),
    Forbidden: (403, "Forbidden"),
    LimitExceeded: (429, "Too Many Requests"),
    Exhausted: (403, "Bandwidth not admitted"),
    Conflict: (409, "Conflict"),
    Precondition: (412, "Precondition Failed"),
    Unavailable: (503, "Service Unavailable"),
}


def problem_of(exc: EngineError) -> tuple[int, str]:
    """HTTP status and title for an engine error (500 for an unknown kind)."""
    for cls in type(exc).__mro__:
        if cls in PROBLEMS:
            return PROBLEMS[cls]
    return 500, "Internal Server Error"


def problem(status: int, title: str, detail: str, instance: str) -> dict[str, Any]:
    """A ProblemDetails object (``type``: about:blank, as RFC 7807 allows)."""
    return {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail[:4000],
        "instance": instance,
    }
