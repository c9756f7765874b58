"""The slice policy: what each slice is promised and where its traffic runs.

Loaded from YAML by :func:`sliceai.policy.load_policy`; frozen once loaded.
All rates are floats in bit/s, all delays in milliseconds. Field names follow
GSMA NG.116 (GST) where it has a name: ``guaranteed.dl`` is the "guaranteed
DL throughput quota", ``maximum.dl`` the "maximum DL throughput".

Priority follows 3GPP: a lower number is more important (5QI priority
levels run 1..127; a slice's priority defaults to its 5QI's level).
"""

from __future__ import annotations

import ipaddress
import re
from enum import Enum
from functools import cached_property
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from sliceai.policy.fiveqi import FiveQICharacteristics, ResourceType, lookup
from sliceai.policy.units import format_duration_ms, format_rate, parse_duration_s, parse_rate


class Direction(str, Enum):
    DL = "dl"
    UL = "ul"


DIRECTIONS: tuple[Direction, ...] = (Direction.DL, Direction.UL)


def _rate(value: object) -> float:
    if isinstance(value, float | int) and not isinstance(value, bool):
        raise ValueError(f"a rate needs a unit: write '{value} bps' or e.g. '20 Mbps'")
    return parse_rate(value)


def _duration_ms(value: object) -> float:
    if isinstance(value, float | int) and not isinstance(value, bool):
        raise ValueError(f"a duration needs a unit: write '{value} ms'")
    return parse_duration_s(value) * 1000.0


Rate = Annotated[float, BeforeValidator(_rate), PlainSerializer(format_rate), Field(ge=0)]
DurationMs = Annotated[
    float, BeforeValidator(_duration_ms), PlainSerializer(format_duration_ms), Field(gt=0)
]
NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def suggest_name(text: str) -> str:
    """``text`` made a valid name: lower case, other characters runs as '-', 63 at most."""
    out = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:63].rstrip("-")
    return out or "slice"


def _name_of(kind: str) -> Any:
    """A before-validator: names match case-insensitively (stored in lower case); any
    other invalid name is refused with a sentence and a suggestion."""

    def check(value: object) -> object:
        if not isinstance(value, str):
            return value  # the str type reports it
        lowered = value.lower()
        if NAME_PATTERN.match(lowered):
            return lowered
        raise ValueError(
            f"{kind} names are lower-case letters, digits and '-' (at most 63, starting and "
            f"ending with a letter or digit): did you mean '{suggest_name(value)}'?"
        )

    return BeforeValidator(check)


Name = Annotated[str, _name_of("policy")]
SliceName = Annotated[str, _name_of("slice")]
LinkName = Annotated[str, _name_of("link")]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Snssai(_Frozen):
    """Single Network Slice Selection Assistance Information (TS 23.003 §28.4.2)."""

    sst: int = Field(ge=1, le=255, description="1 eMBB, 2 URLLC, 3 MIoT, 4 V2X, 5 HMTC")
    sd: str | None = Field(
        default=None, description="slice differentiator, 6 hex digits", pattern=r"^[0-9A-Fa-f]{6}$"
    )

    @field_validator("sd")
    @classmethod
    def _upper(cls, sd: str | None) -> str | None:
        return sd.upper() if sd is not None else None

    def __str__(self) -> str:
        return f"{self.sst}" if self.sd is None else f"{self.sst}-{self.sd}"


class FiveQI(_Frozen):
    """A 5QI and its characteristics; standardized values fill in their defaults."""

    value: int = Field(ge=1, le=255)
    resource_type: ResourceType | None = Field(default=None, strict=False)
    priority_level: int | None = Field(default=None, ge=1, le=127)
    pdb: DurationMs | None = None
    per: float | None = Field(default=None, gt=0, lt=1)
    mdbv_bytes: int | None = Field(default=None, ge=1)
    averaging_window: DurationMs | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_int(cls, data: Any) -> Any:
        if isinstance(data, int) and not isinstance(data, bool):
            return {"value": data}
        return data

    @model_validator(mode="after")
    def _fill_defaults(self) -> FiveQI:
        std = lookup(self.value)
        if std is None:
            missing = [
                f
                for f in ("resource_type", "priority_level", "pdb", "per")
                if getattr(self, f) is None
            ]
            if missing:
                raise ValueError(
                    f"5QI {self.value} is not standardized (TS 23.501 Table 5.7.4-1); "
                    f"give {', '.join(missing)}"
                )
            return self
        fill = {
            "resource_type": std.resource_type,
            "priority_level": std.priority_level,
            "pdb": std.pdb_ms,
            "per": std.per,
            "mdbv_bytes": std.mdbv_bytes,
            "averaging_window": None
            if std.averaging_window_ms is None
            else float(std.averaging_window_ms),
        }
        for key, val in fill.items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, val)
        return self

    @model_serializer(mode="wrap")
    def _compact(self, handler: SerializerFunctionWrapHandler) -> Any:
        # A standardized 5QI with no overrides is written back as its number.
        std = lookup(self.value)
        if std is not None and FiveQI(value=self.value) == self:
            return self.value
        return handler(self)

    @property
    def characteristics(self) -> FiveQICharacteristics:
        assert self.resource_type is not None
        assert self.priority_level is not None
        assert self.pdb is not None
        assert self.per is not None
        return FiveQICharacteristics(
            self.value,
            self.resource_type,
            self.priority_level,
            self.pdb,
            self.per,
            self.mdbv_bytes,
            None if self.averaging_window is None else int(self.averaging_window),
        )


class PerDirection(_Frozen):
    """A rate per direction; a direction left out is 0 (guarantees) or unbounded (maxima)."""

    dl: Rate | None = None
    ul: Rate | None = None

    def get(self, direction: Direction) -> float | None:
        return self.dl if direction is Direction.DL else self.ul


PortSpec = Annotated[str | int, Field(union_mode="left_to_right")]


class PortRange(_Frozen):
    first: int = Field(ge=0, le=65535)
    last: int = Field(ge=0, le=65535)

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, data: Any) -> Any:
        if isinstance(data, int) and not isinstance(data, bool):
            return {"first": data, "last": data}
        if isinstance(data, str):
            lo, sep, hi = data.partition("-")
            try:
                first = int(lo)
                last = int(hi) if sep else first
            except ValueError:
                raise ValueError(
                    f"port {data!r}: write a number or a range like '5000-5010'"
                ) from None
            return {"first": first, "last": last}
        return data

    @model_validator(mode="after")
    def _ordered(self) -> PortRange:
        if self.first > self.last:
            raise ValueError(f"port range {self.first}-{self.last} is reversed")
        return self

    @model_serializer(mode="plain")
    def _compact(self) -> int | str:
        return self.first if self.first == self.last else f"{self.first}-{self.last}"

    def overlaps(self, other: PortRange) -> bool:
        return self.first <= other.last and other.first <= self.last


def _prefix(value: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not isinstance(value, str):
        raise ValueError(f"expected an IP prefix like '10.0.1.0/24', got {value!r}")
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"bad IP prefix {value!r}: {exc}") from None


IpPrefix = Annotated[
    ipaddress.IPv4Network | ipaddress.IPv6Network,
    BeforeValidator(_prefix),
    PlainSerializer(str),
]


class MatchRule(_Frozen):
    """How a slice's packets are recognised; every given field must match (AND).

    ``ports`` are the service's L4 ports: a packet matches when either its
    source or its destination port is in the list, so both directions of a
    flow land in the slice while other flows between the same hosts do not.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, arbitrary_types_allowed=True
    )

    dscp: tuple[int, ...] = Field(default=(), description="DSCP code points 0..63")
    vlan: int | None = Field(default=None, ge=0, le=4095)
    ip_prefixes: tuple[IpPrefix, ...] = ()
    protocol: Literal["tcp", "udp", "sctp", "icmp"] | None = None
    ports: tuple[PortRange, ...] = ()

    @field_validator("dscp", "ip_prefixes", "ports", mode="before")
    @classmethod
    def _listy(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @field_validator("dscp")
    @classmethod
    def _dscp_range(cls, values: tuple[int, ...]) -> tuple[int, ...]:
        for v in values:
            if not 0 <= v <= 63:
                raise ValueError(f"DSCP {v} outside 0..63")
        return values

    @model_validator(mode="after")
    def _useful(self) -> MatchRule:
        if self.ports and self.protocol not in ("tcp", "udp", "sctp"):
            raise ValueError("ports need protocol tcp, udp or sctp")
        if not (self.dscp or self.vlan is not None or self.ip_prefixes or self.protocol):
            raise ValueError("an empty match rule would match every packet; use 'default: true'")
        return self

    def overlaps(self, other: MatchRule) -> bool:
        """True when some packet could match both rules."""
        if self.dscp and other.dscp and not set(self.dscp) & set(other.dscp):
            return False
        if self.vlan is not None and other.vlan is not None and self.vlan != other.vlan:
            return False
        if self.protocol and other.protocol and self.protocol != other.protocol:
            return False
        if (
            self.ip_prefixes
            and other.ip_prefixes
            and not any(
                a.version == b.version and a.overlaps(b)
                for a in self.ip_prefixes
                for b in other.ip_prefixes
            )
        ):
            return False
        if self.ports and other.ports:
            return any(a.overlaps(b) for a in self.ports for b in other.ports)
        return True


class Slice(_Frozen):
    """One network slice and what it is promised."""

    name: SliceName
    description: str = ""
    snssai: Snssai
    five_qi: FiveQI
    guaranteed: PerDirection = PerDirection()
    maximum: PerDirection = PerDirection()
    latency_budget: DurationMs | None = None
    priority: int | None = Field(default=None, ge=1, le=127)
    risk: float = Field(default=0.05, gt=0, le=0.5)
    default: bool = False
    match: tuple[MatchRule, ...] = ()

    @field_validator("match", mode="before")
    @classmethod
    def _listy(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @field_validator("risk", mode="before")
    @classmethod
    def _risk_float(cls, value: Any) -> Any:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _defaults_and_limits(self) -> Slice:
        if self.latency_budget is None:
            object.__setattr__(self, "latency_budget", self.five_qi.pdb)
        if self.priority is None:
            object.__setattr__(self, "priority", self.five_qi.priority_level)
        for d in DIRECTIONS:
            g, m = self.guaranteed.get(d), self.maximum.get(d)
            if g is not None and m is not None and g > m:
                raise ValueError(
                    f"guaranteed.{d.value} ({format_rate(g)}) is above maximum.{d.value} "
                    f"({format_rate(m)})"
                )
        if not self.default and not self.match:
            raise ValueError("a slice needs match rules unless it is the default slice")
        return self

    def guaranteed_bps(self, direction: Direction) -> float:
        return self.guaranteed.get(direction) or 0.0

    def maximum_bps(self, direction: Direction) -> float:
        """The cap in bit/s; ``inf`` when the policy sets none."""
        m = self.maximum.get(direction)
        return float("inf") if m is None else m

    @property
    def priority_level(self) -> int:
        assert self.priority is not None
        return self.priority

    @property
    def latency_budget_ms(self) -> float:
        assert self.latency_budget is not None
        return self.latency_budget

    @property
    def is_guaranteed(self) -> bool:
        """GBR-type 5QI or any guaranteed rate: the solver protects its (1 - risk) quantile."""
        assert self.five_qi.resource_type is not None
        return self.five_qi.resource_type.is_gbr or any(
            self.guaranteed_bps(d) > 0 for d in DIRECTIONS
        )


class Link(_Frozen):
    """A link with its capacity per direction (full duplex) and the slices that cross it."""

    name: LinkName
    capacity: Rate = Field(gt=0)
    slices: tuple[SliceName, ...]

    @field_validator("slices", mode="before")
    @classmethod
    def _listy(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value


class Topology(_Frozen):
    links: tuple[Link, ...] = Field(min_length=1)

    @field_validator("links", mode="before")
    @classmethod
    def _listy(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value


class Policy(_Frozen):
    """A whole slice policy: slices plus the topology they share."""

    name: Name
    description: str = ""
    slices: tuple[Slice, ...] = Field(min_length=1)
    topology: Topology

    @field_validator("slices", mode="before")
    @classmethod
    def _listy(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @cached_property
    def slice_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.slices)

    @cached_property
    def link_names(self) -> tuple[str, ...]:
        return tuple(link.name for link in self.topology.links)

    @cached_property
    def _slice_index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.slice_names)}

    @cached_property
    def _link_index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.link_names)}

    def slice(self, name: str) -> Slice:
        """The slice called ``name``; KeyError when there is none."""
        return self.slices[self._slice_index[name]]

    def link(self, name: str) -> Link:
        return self.topology.links[self._link_index[name]]

    def slice_index(self, name: str) -> int:
        return self._slice_index[name]

    def links_of(self, slice_name: str) -> tuple[str, ...]:
        """Names of the links a slice crosses, in topology order."""
        return self._links_of[slice_name]

    @cached_property
    def _links_of(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, list[str]] = {name: [] for name in self.slice_names}
        for link in self.topology.links:
            for s in link.slices:
                if s in out:
                    out[s].append(link.name)
        return {k: tuple(v) for k, v in out.items()}

    @cached_property
    def incidence(self) -> Any:
        """Link x slice 0/1 matrix (numpy bool array, shape ``(n_links, n_slices)``)."""
        a = np.zeros((len(self.link_names), len(self.slice_names)), dtype=bool)
        for li, link in enumerate(self.topology.links):
            for s in link.slices:
                if s in self._slice_index:
                    a[li, self._slice_index[s]] = True
        a.setflags(write=False)
        return a
