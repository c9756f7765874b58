"""Policy + plan -> OpenFlow 1.3 tables, and the add / modify / delete diff between two tables.

Pure logic: no os-ken import. Everything is plain frozen data; the adapter in
:mod:`sliceai.controller.ofmsgs` turns it into parser messages.

Pipeline on every switch:

* table 0 (:data:`CLASSIFY_TABLE`): one flow per slice, direction and match
  variant sends the packet through the slice's meter for that direction, then
  to table 1. Unmatched traffic goes through the default slice's meters (the
  lowest-priority flows), or unmetered when the policy has no default slice.
* table 1 (:data:`FORWARD_TABLE`): forwarding. One flow: output to ``NORMAL``,
  i.e. Open vSwitch's own MAC-learning L2 switch (the testbed's forwarding).

Direction: the controller configuration names the core-facing ports. A packet
entering from a core port is downlink (DL), from any other (access) port uplink
(UL). DL flows match ``in_port`` (one flow per core port) at higher priority than
the UL flows, which match no port, so every packet is classified exactly once.

Matching: a slice's rule matches protocol and L4 port, where a packet belongs to
the slice when its source *or* destination port is a service port (two flows per
port block), so the reverse-direction ACKs of a different flow between the same
hosts never pass this slice's meter. IP prefixes likewise match either the source
or the destination address. DSCP and VLAN match exactly. Port ranges become
aligned (value, mask) blocks.

Meters: one per slice per direction per switch, id ``1 + 2 * slice_index +
direction_index`` (DL 0, UL 1), a single drop band in kbit/s with a burst of
``burst_s`` seconds of traffic (never below ``min_burst_kbits``): without a
burst the switch lets through about twice the rate during the first second,
while a burst of 0.1 s halved a 10 Mbit/s TCP flow on the testbed (0.5 s: 9.4 Mbit/s).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from sliceai.policy.model import DIRECTIONS, Direction, MatchRule, Policy, Slice

CLASSIFY_TABLE = 0
FORWARD_TABLE = 1
#: Cookie on every flow this controller installs (``0x5115CE`` plus the table id).
COOKIE = 0x5115CE00
#: OpenFlow port number of Open vSwitch's built-in L2 switch (``OFPP_NORMAL``).
OFPP_NORMAL = 0xFFFFFFFA
OFPVID_PRESENT = 0x1000
_U32 = 0xFFFFFFFF

ETH_TYPE_IPV4 = 0x0800
ETH_TYPE_IPV6 = 0x86DD
_IP_PROTO = {"tcp": 6, "udp": 17, "sctp": 132}
_ICMP_PROTO = {ETH_TYPE_IPV4: 1, ETH_TYPE_IPV6: 58}

# Flow priorities in table 0: every DL flow above every UL flow, slices above the default.
_DL_BASE = 40000
_UL_BASE = 20000
_DEFAULT_DL_PRIORITY = 2
_DEFAULT_UL_PRIORITY = 1

#: A match value: an exact int / address, or a (value, mask) pair.
MatchValue = int | str | tuple[int, int] | tuple[str, str]
#: Match fields as sorted (OXM field name as in os-ken's ``OFPMatch`` kwargs, value) pairs.
MatchFields = tuple[tuple[str, MatchValue], ...]
#: A plan: per slice name and direction, the allocated rate in bit/s.
PlanRates = Mapping[tuple[str, Direction], float]


class ControllerConfigError(ValueError):
    """Bad controller configuration or plan (the message names the field)."""


@dataclass(frozen=True)
class FlowEntry:
    """One OpenFlow 1.3 flow: match, then an optional meter, then goto / output."""

    table_id: int
    priority: int
    match: MatchFields
    meter_id: int | None = None
    goto_table: int | None = None
    output_port: int | None = None
    slice_name: str | None = None
    direction: Direction | None = None

    @property
    def key(self) -> tuple[int, int, MatchFields]:
        """What identifies a flow on the switch (``*_STRICT`` commands)."""
        return (self.table_id, self.priority, self.match)

    @property
    def cookie(self) -> int:
        return COOKIE | self.table_id


@dataclass(frozen=True)
class MeterEntry:
    """A meter with one drop band. ``rate_kbps`` kbit/s, ``burst_kbits`` kbit."""

    meter_id: int
    rate_kbps: int
    burst_kbits: int


@dataclass(frozen=True)
class FlowOp:
    command: Literal["add", "modify", "delete"]
    flow: FlowEntry


@dataclass(frozen=True)
class MeterOp:
    command: Literal["add", "modify", "delete"]
    meter: MeterEntry


@dataclass(frozen=True)
class ClearAll:
    """Delete every flow in every table and every meter (a switch just (re)connected)."""


Op = FlowOp | MeterOp | ClearAll


@dataclass(frozen=True)
class SwitchTables:
    """The complete desired (or installed) state of one switch."""

    flows: Mapping[tuple[int, int, MatchFields], FlowEntry] = field(default_factory=dict)
    meters: Mapping[int, MeterEntry] = field(default_factory=dict)


@dataclass(frozen=True)
class EnforcementConfig:
    """How plans are enforced on a switch.

    ``core_ports``: OpenFlow port numbers facing the core (traffic entering there is DL).
    ``burst_s``: meter burst as seconds of the metered rate. ``min_burst_kbits``: its floor.
    ``min_rate_kbps``: the lowest meter rate installed (a 0 bit/s plan becomes this).
    """

    core_ports: tuple[int, ...]
    burst_s: float = 0.5
    min_burst_kbits: int = 64
    min_rate_kbps: int = 1

    def __post_init__(self) -> None:
        if not self.core_ports:
            raise ControllerConfigError("core_ports: name at least one core-facing port")
        for p in self.core_ports:
            if not 1 <= p <= 0xFFFFFF00:
                raise ControllerConfigError(f"core_ports: {p} is not a physical OpenFlow port")
        if not (0 < self.burst_s <= 10):
            raise ControllerConfigError(f"burst_s: {self.burst_s} s is outside (0, 10]")
        if self.min_burst_kbits < 1 or self.min_rate_kbps < 1:
            raise ControllerConfigError("min_burst_kbits and min_rate_kbps must be >= 1")


def meter_id(slice_index: int, direction: Direction) -> int:
    """Meter id of a slice's direction: ``1 + 2 * slice_index + (0 DL, 1 UL)``."""
    return 1 + 2 * slice_index + DIRECTIONS.index(direction)


def port_blocks(first: int, last: int) -> list[tuple[int, int]]:
    """Cover ``first..last`` exactly with aligned (value, mask) blocks, fewest first."""
    if not 0 <= first <= last <= 0xFFFF:
        raise ControllerConfigError(f"port range {first}-{last} is not within 0..65535")
    blocks: list[tuple[int, int]] = []
    lo = first
    while lo <= last:
        size = lo & -lo if lo else 1 << 16
        while size > 1 and lo + size - 1 > last:
            size //= 2
        blocks.append((lo, 0xFFFF & ~(size - 1)))
        lo += size
    return blocks


def _rule_variants(rule: MatchRule) -> list[dict[str, MatchValue]]:
    """Every OpenFlow match (as a dict) that together cover one policy match rule."""
    base: list[dict[str, MatchValue]] = [{}]
    if rule.vlan is not None:
        base = [{"vlan_vid": OFPVID_PRESENT | rule.vlan}]
    ip_needed = bool(rule.dscp or rule.ip_prefixes or rule.protocol)
    if not ip_needed:
        return base
    # eth_type: from the prefixes' IP versions, else both IPv4 and IPv6.
    eth_types = sorted(
        {ETH_TYPE_IPV4 if p.version == 4 else ETH_TYPE_IPV6 for p in rule.ip_prefixes}
        or {ETH_TYPE_IPV4, ETH_TYPE_IPV6}
    )
    out: list[dict[str, MatchValue]] = []
    for eth_type in eth_types:
        addr: list[dict[str, MatchValue]] = [{}]
        prefixes = [p for p in rule.ip_prefixes if (p.version == 4) == (eth_type == ETH_TYPE_IPV4)]
        if prefixes:
            fam = "ipv4" if eth_type == ETH_TYPE_IPV4 else "ipv6"
            addr = [
                {f"{fam}_{end}": (str(p.network_address), str(p.netmask))}
                for p in prefixes
                for end in ("src", "dst")
            ]
        proto: list[dict[str, MatchValue]] = [{}]
        if rule.protocol == "icmp":
            proto = [{"ip_proto": _ICMP_PROTO[eth_type]}]
        elif rule.protocol is not None:
            number = _IP_PROTO[rule.protocol]
            if rule.ports:
                proto = [
                    {"ip_proto": number, f"{rule.protocol}_{end}": v if m == 0xFFFF else (v, m)}
                    for pr in rule.ports
                    for v, m in port_blocks(pr.first, pr.last)
                    for end in ("src", "dst")
                ]
            else:
                proto = [{"ip_proto": number}]
        dscps: list[dict[str, MatchValue]] = [{"ip_dscp": d} for d in rule.dscp] or [{}]
        for b in base:
            for a in addr:
                for p in proto:
                    for d in dscps:
                        out.append({**b, "eth_type": eth_type, **a, **p, **d})
    return out


def _fields(d: Mapping[str, MatchValue]) -> MatchFields:
    return tuple(sorted(d.items()))


def classification_flows(policy: Policy, config: EnforcementConfig) -> list[FlowEntry]:
    """Table 0 and table 1 flows for a policy (independent of the plan's rates)."""
    flows: list[FlowEntry] = [
        FlowEntry(FORWARD_TABLE, 0, (), output_port=OFPP_NORMAL),
    ]
    if len(policy.slices) > _DL_BASE - _UL_BASE - 1:
        raise ControllerConfigError(f"policy {policy.name!r}: too many slices for one flow table")
    # A packet may match two slices (source port of one, destination port of the other):
    # each slice gets its own priority, the more important slice (lower 5QI level) higher.
    order = sorted(range(len(policy.slices)), key=lambda i: (policy.slices[i].priority_level, i))
    ranks = {index: len(order) - pos for pos, index in enumerate(order)}
    default: tuple[int, Slice] | None = None
    for index, sl in enumerate(policy.slices):
        if sl.default:
            default = (index, sl)
        variants = [v for rule in sl.match for v in _rule_variants(rule)]
        rank = ranks[index]
        for direction in DIRECTIONS:
            mid = meter_id(index, direction)
            for v in variants:
                if direction is Direction.DL:
                    for port in config.core_ports:
                        flows.append(
                            FlowEntry(
                                CLASSIFY_TABLE,
                                _DL_BASE + rank,
                                _fields({**v, "in_port": port}),
                                mid,
                                FORWARD_TABLE,
                                slice_name=sl.name,
                                direction=direction,
                            )
                        )
                else:
                    flows.append(
                        FlowEntry(
                            CLASSIFY_TABLE,
                            _UL_BASE + rank,
                            _fields(v),
                            mid,
                            FORWARD_TABLE,
                            slice_name=sl.name,
                            direction=direction,
                        )
                    )
    if default is None:
        flows.append(FlowEntry(CLASSIFY_TABLE, 0, (), None, FORWARD_TABLE))
    else:
        index, sl = default
        for port in config.core_ports:
            flows.append(
                FlowEntry(
                    CLASSIFY_TABLE,
                    _DEFAULT_DL_PRIORITY,
                    _fields({"in_port": port}),
                    meter_id(index, Direction.DL),
                    FORWARD_TABLE,
                    slice_name=sl.name,
                    direction=Direction.DL,
                )
            )
        flows.append(
            FlowEntry(
                CLASSIFY_TABLE,
                _DEFAULT_UL_PRIORITY,
                (),
                meter_id(index, Direction.UL),
                FORWARD_TABLE,
                slice_name=sl.name,
                direction=Direction.UL,
            )
        )
    return flows


def meter_for(mid: int, rate_bps: float, config: EnforcementConfig) -> MeterEntry:
    """The meter enforcing ``rate_bps`` (bit/s); rates round to whole kbit/s, at most 2**32 - 1."""
    if math.isnan(rate_bps) or rate_bps < 0:
        raise ControllerConfigError(f"meter {mid}: rate {rate_bps} bit/s is not a rate")
    # OpenFlow carries both as 32-bit kbit/s / kbit: clamp (4.3 Tbit/s is "unlimited" here).
    rate_kbps = min(_U32, max(config.min_rate_kbps, round(rate_bps / 1000.0)))
    burst = min(_U32, max(config.min_burst_kbits, math.ceil(rate_kbps * config.burst_s)))
    return MeterEntry(mid, rate_kbps, burst)


class TableBuilder:
    """Builds :class:`SwitchTables` for plans of one policy, reusing the classification flows.

    The flows depend only on the policy and on which meters exist, so they are
    built once per set of metered slices; a plan that only changes rates costs a
    pass over the meters (and :func:`diff_tables` then skips the unchanged flows).
    """

    def __init__(self, policy: Policy, config: EnforcementConfig) -> None:
        self.policy = policy
        self.config = config
        self._known = frozenset(policy.slice_names)
        self._flows = classification_flows(policy, config)
        self._by_metered: dict[
            frozenset[int], Mapping[tuple[int, int, MatchFields], FlowEntry]
        ] = {}

    def check(self, rates: PlanRates) -> None:
        """Raise :class:`ControllerConfigError` for unknown slices or rates that are not rates."""
        unknown = sorted({name for name, _ in rates} - self._known)
        if unknown:
            raise ControllerConfigError(
                f"plan names slices not in policy {self.policy.name!r}: {unknown}"
            )
        for (name, direction), rate in rates.items():
            if math.isnan(rate) or rate < 0:
                raise ControllerConfigError(
                    f"plan: slice {name!r} {direction.value}: {rate} bit/s is not a rate"
                )

    def tables(self, rates: PlanRates) -> SwitchTables:
        """The switch state enforcing ``rates`` (see :func:`desired_tables`)."""
        self.check(rates)
        meters: dict[int, MeterEntry] = {}
        for index, sl in enumerate(self.policy.slices):
            for direction in DIRECTIONS:
                rate = rates.get((sl.name, direction))
                if rate is None or math.isinf(rate):
                    continue
                mid = meter_id(index, direction)
                meters[mid] = meter_for(mid, rate, self.config)
        metered = frozenset(meters)
        flows = self._by_metered.get(metered)
        if flows is None:
            built: dict[tuple[int, int, MatchFields], FlowEntry] = {}
            for f in self._flows:
                if f.meter_id is not None and f.meter_id not in meters:
                    f = dataclasses.replace(f, meter_id=None)
                built[f.key] = f
            if len(self._by_metered) > 64:
                self._by_metered.clear()
            flows = self._by_metered[metered] = built
        return SwitchTables(flows, meters)


def desired_tables(policy: Policy, rates: PlanRates, config: EnforcementConfig) -> SwitchTables:
    """The switch state enforcing ``rates`` (bit/s per slice name and direction).

    A slice/direction missing from ``rates`` or at ``inf`` is not metered (its
    flows still classify it, without a meter instruction). Unknown slice names
    are an error.
    """
    return TableBuilder(policy, config).tables(rates)


def diff_tables(installed: SwitchTables, desired: SwitchTables) -> list[Op]:
    """Operations turning ``installed`` into ``desired``, touching only what changed.

    Order keeps every flow's meter present while the flow exists: meter adds and
    modifies, then flow adds and modifies, then flow deletes, then meter deletes.
    """
    ops: list[Op] = []
    same_flows = installed.flows is desired.flows
    for mid, meter in sorted(desired.meters.items()):
        old = installed.meters.get(mid)
        if old is None:
            ops.append(MeterOp("add", meter))
        elif old != meter:
            ops.append(MeterOp("modify", meter))
    for key, flow in () if same_flows else desired.flows.items():
        old_flow = installed.flows.get(key)
        if old_flow is None:
            ops.append(FlowOp("add", flow))
        elif old_flow != flow:
            ops.append(FlowOp("modify", flow))
    for key, flow in () if same_flows else installed.flows.items():
        if key not in desired.flows:
            ops.append(FlowOp("delete", flow))
    for mid, meter in sorted(installed.meters.items()):
        if mid not in desired.meters:
            ops.append(MeterOp("delete", meter))
    return ops


def full_install(desired: SwitchTables) -> list[Op]:
    """Operations for a switch whose state is unknown: clear it, then add everything."""
    return [ClearAll(), *diff_tables(SwitchTables(), desired)]


def rates_from_array(
    policy: Policy, rates_bps: Sequence[Sequence[float]]
) -> dict[tuple[str, Direction], float]:
    """A solver ``Plan.rates_bps`` array ``(n_slices, 2)`` (bit/s; DL, UL) as a rates mapping."""
    if len(rates_bps) != len(policy.slices):
        raise ControllerConfigError(
            f"plan has {len(rates_bps)} rows, policy {policy.name!r} "
            f"has {len(policy.slices)} slices"
        )
    out: dict[tuple[str, Direction], float] = {}
    for sl, row in zip(policy.slices, rates_bps, strict=True):
        if len(row) != 2:
            raise ControllerConfigError(
                f"plan row of slice {sl.name!r} has {len(row)} entries, not 2"
            )
        for direction, value in zip(DIRECTIONS, row, strict=True):
            out[(sl.name, direction)] = float(value)
    return out


def guarantees_only_rates(policy: Policy) -> dict[tuple[str, Direction], float]:
    """The fail-safe plan: each slice at its guaranteed floor (bit/s), like ``guarantees_only``."""
    return {(sl.name, d): sl.guaranteed_bps(d) for sl in policy.slices for d in DIRECTIONS}


def ops_summary(ops: Iterable[Op]) -> dict[str, int]:
    """Counts like ``{"meter add": 3, "flow delete": 1}`` for logs."""
    counts: dict[str, int] = {}
    for op in ops:
        name = (
            "clear all"
            if isinstance(op, ClearAll)
            else (f"{'meter' if isinstance(op, MeterOp) else 'flow'} {op.command}")
        )
        counts[name] = counts.get(name, 0) + 1
    return counts


def ip_in(value: str, prefix: tuple[str, str]) -> bool:
    """True when address ``value`` is inside the (network, netmask) pair ``prefix``."""
    net = ipaddress.ip_network(f"{prefix[0]}/{prefix[1]}")
    return ipaddress.ip_address(value) in net
