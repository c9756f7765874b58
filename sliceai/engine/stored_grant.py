"""Reading a stored grant row back, trusting nothing in it.

A row the service wrote is always valid; one written by hand, by a broken tool or
damaged on disk may not be JSON, or may hold values no request could carry (a
direction "sideways", a rate of -1, a port that is a string). :func:`grant_from_row`
checks every field against the rules :func:`sliceai.engine.grants.validate_request`
applies (all but the slice, which depends on the policy: the engine checks that) and
raises :class:`BadRow` with the reason, so the store can set the row aside instead of
failing to start or serving it.
"""

from __future__ import annotations

import json
import math
from typing import Any

from sliceai.engine.grants import (
    GRANT_DIRECTIONS,
    IDENTIFIER,
    MAX_GRANT_BPS,
    MAX_PORTS,
    MAX_SESSION_FILTERS,
    PROTOCOLS,
    REQUEST_TYPES,
    BwRequest,
    Grant,
    SessionFilter,
)

_FIELDS = {
    "app_ins_id",
    "slice",
    "fixed_allocation_bps",
    "direction",
    "request_type",
    "app_name",
    "priority",
    "session_filters",
}
_FILTER_FIELDS = {"source_ip", "source_ports", "dst_address", "dst_ports", "protocol"}


class BadRow(ValueError):
    """A stored row that cannot be a grant; the message says why."""


def _need(ok: bool, why: str) -> None:
    if not ok:
        raise BadRow(why)


def _int(value: Any, lo: float, hi: float, field: str) -> int:
    _need(
        isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi,
        f"{field} is {str(value)[:40]!r}, not an integer in {lo:g}..{hi:g}",
    )
    return int(value)


def _str(value: Any, field: str, longest: int = 256) -> str:
    _need(isinstance(value, str) and len(value) <= longest, f"{field} is not a short text")
    return str(value)


def _time(value: Any, field: str) -> float:
    _need(
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value),
        f"{field} is {str(value)[:40]!r}, not a time",
    )
    return float(value)


def _ports(value: Any, field: str) -> tuple[int, ...]:
    _need(isinstance(value, list) and len(value) <= MAX_PORTS, f"{field} is not a port list")
    return tuple(_int(p, 1, 65535, field) for p in value)


def _filter(raw: Any, i: int) -> SessionFilter:
    where = f"session_filters[{i}]"
    _need(isinstance(raw, dict) and set(raw) == _FILTER_FIELDS, f"{where} has the wrong fields")
    protocol = _str(raw["protocol"], f"{where}.protocol")
    _need(protocol in PROTOCOLS, f"{where}.protocol {protocol[:16]!r} is unknown")
    return SessionFilter(
        _str(raw["source_ip"], f"{where}.source_ip", 64),
        _ports(raw["source_ports"], f"{where}.source_ports"),
        _str(raw["dst_address"], f"{where}.dst_address", 64),
        _ports(raw["dst_ports"], f"{where}.dst_ports"),
        protocol,
    )


def grant_from_row(
    allocation_id: Any, app_ins_id: Any, body: Any, created: Any, modified: Any
) -> Grant:
    """The grant a ``grants`` row holds; :class:`BadRow` when any part of it is wrong."""
    _need(isinstance(allocation_id, str) and 0 < len(allocation_id) <= 128, "bad allocation id")
    _need(isinstance(body, str), "body is not text")
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise BadRow(f"body is not JSON ({exc})") from None
    _need(isinstance(data, dict), "body is not a JSON object")
    _need(set(data) == _FIELDS, f"body has fields {sorted(data)[:12]}, expected {sorted(_FIELDS)}")
    app = _str(data["app_ins_id"], "app_ins_id", 128)
    _need(bool(IDENTIFIER.match(app)), "app_ins_id is not an identifier")
    _need(app == app_ins_id, f"app_ins_id {app!r} differs from the row's {app_ins_id!r}")
    direction = _str(data["direction"], "direction")
    _need(direction in GRANT_DIRECTIONS, f"direction {direction[:16]!r} is unknown")
    request_type = _str(data["request_type"], "request_type")
    _need(request_type in REQUEST_TYPES, f"request_type {request_type[:16]!r} is unknown")
    raw_filters = data["session_filters"]
    _need(
        isinstance(raw_filters, list) and len(raw_filters) <= MAX_SESSION_FILTERS,
        "session_filters is not a short list",
    )
    _need(
        (request_type == "session") == bool(raw_filters),
        "session filters must be given for session grants only",
    )
    slice_name = _str(data["slice"], "slice")
    _need(bool(slice_name), "slice is empty")
    request = BwRequest(
        app,
        slice_name,
        _int(data["fixed_allocation_bps"], 1, MAX_GRANT_BPS, "fixed_allocation_bps"),
        direction,
        request_type,
        _str(data["app_name"], "app_name"),
        _int(data["priority"], 0, 255, "priority"),
        tuple(_filter(f, i) for i, f in enumerate(raw_filters)),
    )
    return Grant(allocation_id, request, _time(created, "created"), _time(modified, "modified"))
