"""Plain operations (:mod:`sliceai.controller.flows`) -> OpenFlow 1.3 parser messages.

Works with os-ken and Ryu alike: it uses only the ``ofproto`` and
``ofproto_parser`` modules hanging off the datapath object, never imports either
framework, and builds each message in a few lines.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sliceai.controller.flows import ClearAll, FlowEntry, FlowOp, MeterEntry, MeterOp, Op


def flow_mod(datapath: Any, flow: FlowEntry, command: str) -> Any:
    """An OFPFlowMod for ``flow``: add, modify (strict) or delete (strict)."""
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    match = parser.OFPMatch(**dict(flow.match))
    if command == "delete":
        return parser.OFPFlowMod(
            datapath,
            cookie=flow.cookie,
            cookie_mask=0xFFFFFFFFFFFFFFFF,
            table_id=flow.table_id,
            command=ofp.OFPFC_DELETE_STRICT,
            priority=flow.priority,
            out_port=ofp.OFPP_ANY,
            out_group=ofp.OFPG_ANY,
            match=match,
        )
    instructions: list[Any] = []
    if flow.meter_id is not None:
        instructions.append(parser.OFPInstructionMeter(flow.meter_id, ofp.OFPIT_METER))
    if flow.output_port is not None:
        actions = [parser.OFPActionOutput(flow.output_port, ofp.OFPCML_NO_BUFFER)]
        instructions.append(parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions))
    if flow.goto_table is not None:
        instructions.append(parser.OFPInstructionGotoTable(flow.goto_table))
    return parser.OFPFlowMod(
        datapath,
        cookie=flow.cookie,
        table_id=flow.table_id,
        command=ofp.OFPFC_ADD if command == "add" else ofp.OFPFC_MODIFY_STRICT,
        priority=flow.priority,
        buffer_id=ofp.OFP_NO_BUFFER,
        match=match,
        instructions=instructions,
    )


def meter_mod(datapath: Any, meter: MeterEntry, command: str) -> Any:
    """An OFPMeterMod with one drop band (rate kbit/s, burst kbit) and stats on."""
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    commands = {"add": ofp.OFPMC_ADD, "modify": ofp.OFPMC_MODIFY, "delete": ofp.OFPMC_DELETE}
    bands = (
        []
        if command == "delete"
        else [parser.OFPMeterBandDrop(rate=meter.rate_kbps, burst_size=meter.burst_kbits)]
    )
    return parser.OFPMeterMod(
        datapath,
        command=commands[command],
        flags=ofp.OFPMF_KBPS | ofp.OFPMF_BURST | ofp.OFPMF_STATS,
        meter_id=meter.meter_id,
        bands=bands,
    )


def clear_all(datapath: Any) -> list[Any]:
    """Delete every flow of every table, then every meter."""
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    flows = parser.OFPFlowMod(
        datapath,
        table_id=ofp.OFPTT_ALL,
        command=ofp.OFPFC_DELETE,
        out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY,
        match=parser.OFPMatch(),
    )
    meters = parser.OFPMeterMod(datapath, command=ofp.OFPMC_DELETE, meter_id=ofp.OFPM_ALL)
    return [flows, meters]


def messages(datapath: Any, ops: Iterable[Op]) -> list[Any]:
    """Parser messages for ``ops`` in order (the caller appends a barrier)."""
    out: list[Any] = []
    for op in ops:
        if isinstance(op, ClearAll):
            out.extend(clear_all(datapath))
        elif isinstance(op, MeterOp):
            out.append(meter_mod(datapath, op.meter, op.command))
        elif isinstance(op, FlowOp):
            out.append(flow_mod(datapath, op.flow, op.command))
    return out


def stats_requests(datapath: Any) -> list[Any]:
    """Meter and port stats requests for all meters and ports."""
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    return [
        parser.OFPMeterStatsRequest(datapath, 0, ofp.OFPM_ALL),
        parser.OFPPortStatsRequest(datapath, 0, ofp.OFPP_ANY),
    ]
