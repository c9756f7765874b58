"""A fake OpenFlow 1.3 switch table for tests: apply operations, then ask where a packet goes.

It answers "which meters does this packet pass and where is it output", by the
same rules a switch uses (highest-priority matching flow per table, masks,
goto-table), so tests can assert behaviour rather than message lists.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sliceai.controller.flows import (
    OFPVID_PRESENT,
    ClearAll,
    FlowEntry,
    FlowOp,
    MatchFields,
    MeterEntry,
    MeterOp,
    Op,
    ip_in,
)


class FakeSwitchError(Exception):
    """An operation a real switch would reject (e.g. a flow naming a missing meter)."""


@dataclass(frozen=True)
class Packet:
    """The header fields a classification flow can look at."""

    in_port: int
    eth_type: int = 0x0800
    ip_proto: int | None = None
    src_ip: str | None = None
    dst_ip: str | None = None
    src_port: int | None = None
    dst_port: int | None = None
    dscp: int = 0
    vlan: int | None = None

    def field(self, name: str) -> int | str | None:
        """The packet's value for an OXM field name, None when the packet lacks it."""
        proto_name = {6: "tcp", 17: "udp", 132: "sctp"}.get(self.ip_proto or -1)
        is_ip = self.eth_type in (0x0800, 0x86DD)
        if name == "in_port":
            return self.in_port
        if name == "eth_type":
            return self.eth_type
        if name == "vlan_vid":
            return None if self.vlan is None else OFPVID_PRESENT | self.vlan
        if name == "ip_proto":
            return self.ip_proto if is_ip else None
        if name == "ip_dscp":
            return self.dscp if is_ip else None
        if name in ("ipv4_src", "ipv6_src"):
            return self.src_ip if is_ip else None
        if name in ("ipv4_dst", "ipv6_dst"):
            return self.dst_ip if is_ip else None
        proto, _, end = name.partition("_")
        if proto_name is not None and proto == proto_name:
            return self.src_port if end == "src" else self.dst_port
        return None


@dataclass(frozen=True)
class Verdict:
    meters: tuple[int, ...]
    output_port: int | None
    flows: tuple[FlowEntry, ...]


def _matches(packet: Packet, match: MatchFields) -> bool:
    for name, want in match:
        have = packet.field(name)
        if have is None:
            return False
        if isinstance(want, tuple):
            value, mask = want
            if isinstance(value, str):
                if not isinstance(have, str) or not ip_in(have, (value, str(mask))):
                    return False
            elif not isinstance(have, int) or (have & int(mask)) != (value & int(mask)):
                return False
        elif have != want:
            return False
    return True


class FakeFlowTable:
    """Flows and meters of one fake switch, changed only through :class:`Op` values."""

    def __init__(self) -> None:
        self.flows: dict[tuple[int, int, MatchFields], FlowEntry] = {}
        self.meters: dict[int, MeterEntry] = {}
        self.applied = 0

    def apply(self, ops: Iterable[Op]) -> None:
        for op in ops:
            self.applied += 1
            if isinstance(op, ClearAll):
                self.flows.clear()
                self.meters.clear()
            elif isinstance(op, MeterOp):
                self._meter(op)
            else:
                self._flow(op)

    def _meter(self, op: MeterOp) -> None:
        mid = op.meter.meter_id
        if op.command == "add":
            if mid in self.meters:
                raise FakeSwitchError(f"meter {mid} exists (METER_EXISTS)")
            self.meters[mid] = op.meter
        elif op.command == "modify":
            if mid not in self.meters:
                raise FakeSwitchError(f"meter {mid} unknown (UNKNOWN_METER)")
            self.meters[mid] = op.meter
        else:
            if any(f.meter_id == mid for f in self.flows.values()):
                raise FakeSwitchError(f"meter {mid} deleted while a flow still uses it")
            self.meters.pop(mid, None)

    def _flow(self, op: FlowOp) -> None:
        flow = op.flow
        if op.command in ("add", "modify"):
            if flow.meter_id is not None and flow.meter_id not in self.meters:
                raise FakeSwitchError(f"flow names meter {flow.meter_id}, not installed")
            if op.command == "modify" and flow.key not in self.flows:
                raise FakeSwitchError(f"modify of a missing flow {flow.key}")
            self.flows[flow.key] = flow
        else:
            self.flows.pop(flow.key, None)

    def process(self, packet: Packet) -> Verdict:
        """Run ``packet`` through the pipeline from table 0."""
        table: int | None = 0
        meters: list[int] = []
        hit: list[FlowEntry] = []
        output: int | None = None
        while table is not None:
            candidates = [
                f for f in self.flows.values() if f.table_id == table and _matches(packet, f.match)
            ]
            if not candidates:
                break  # table miss with no miss flow: drop
            best = max(candidates, key=lambda f: f.priority)
            tied = {
                (f.meter_id, f.goto_table, f.output_port)
                for f in candidates
                if f.priority == best.priority
            }
            if len(tied) > 1:
                raise FakeSwitchError(f"packet {packet} matches {len(tied)} flows of one priority")
            hit.append(best)
            if best.meter_id is not None:
                meters.append(best.meter_id)
            if best.output_port is not None:
                output = best.output_port
            table = best.goto_table
        return Verdict(tuple(meters), output, tuple(hit))
