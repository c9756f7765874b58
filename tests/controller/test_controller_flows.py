"""Plan -> flows and meters, checked through a fake flow table (where does a packet go)."""

from __future__ import annotations

import pytest

from sliceai.controller.fake_table import FakeFlowTable, Packet
from sliceai.controller.flows import (
    OFPP_NORMAL,
    ClearAll,
    ControllerConfigError,
    EnforcementConfig,
    FlowOp,
    MeterOp,
    desired_tables,
    diff_tables,
    full_install,
    meter_for,
    meter_id,
    port_blocks,
    rates_from_array,
)
from sliceai.policy import Direction, Policy

CORE = 1
CONFIG = EnforcementConfig(core_ports=(CORE,))
DL, UL = Direction.DL, Direction.UL


def _rates(
    surgery: float = 4e6, factory: float = 8e6, embb: float = 50e6
) -> dict[tuple[str, Direction], float]:
    return {
        (n, d): r
        for n, r in (("surgery", surgery), ("factory", factory), ("embb", embb))
        for d in (DL, UL)
    }


@pytest.fixture
def switch(policy: Policy) -> FakeFlowTable:
    table = FakeFlowTable()
    table.apply(full_install(desired_tables(policy, _rates(), CONFIG)))
    return table


def test_slice_packets_pass_their_own_meter_per_direction(switch: FakeFlowTable) -> None:
    ul = switch.process(
        Packet(
            in_port=2,
            ip_proto=17,
            src_ip="10.0.0.2",
            dst_ip="10.0.0.1",
            src_port=40000,
            dst_port=5000,
        )
    )
    dl = switch.process(
        Packet(
            in_port=CORE,
            ip_proto=17,
            src_ip="10.0.0.1",
            dst_ip="10.0.0.2",
            src_port=5000,
            dst_port=40000,
        )
    )
    assert ul.meters == (meter_id(0, UL),)
    assert dl.meters == (meter_id(0, DL),)
    assert ul.output_port == dl.output_port == OFPP_NORMAL


def test_reverse_ack_of_another_flow_skips_the_slice_meter(switch: FakeFlowTable) -> None:
    # An eMBB TCP download from 10.0.0.1:443 to the same host that runs the factory flow:
    # its ACKs go UL between the same addresses but must not pass factory's meter.
    ack = Packet(
        in_port=2, ip_proto=6, src_ip="10.0.0.2", dst_ip="10.0.0.1", src_port=40001, dst_port=443
    )
    factory = Packet(
        in_port=2, ip_proto=6, src_ip="10.0.0.2", dst_ip="10.0.0.1", src_port=40002, dst_port=5202
    )
    assert switch.process(ack).meters == (meter_id(2, UL),)  # the default slice (embb)
    assert switch.process(factory).meters == (meter_id(1, UL),)


def test_prefix_port_range_dscp_and_vlan_rules(switch: FakeFlowTable) -> None:
    outside = Packet(
        in_port=2,
        ip_proto=6,
        src_ip="192.168.1.2",
        dst_ip="192.168.1.1",
        src_port=40002,
        dst_port=5202,
    )
    assert switch.process(outside).meters == (meter_id(2, UL),)
    edge = Packet(
        in_port=2, ip_proto=6, src_ip="10.0.0.2", dst_ip="10.0.0.1", src_port=40002, dst_port=5204
    )
    assert switch.process(edge).meters == (meter_id(2, UL),)
    sctp = Packet(in_port=CORE, ip_proto=132, src_ip="1.1.1.1", dst_ip="2.2.2.2", dscp=46, vlan=20)
    assert switch.process(sctp).meters == (meter_id(1, DL),)
    wrong_vlan = Packet(
        in_port=CORE, ip_proto=132, src_ip="1.1.1.1", dst_ip="2.2.2.2", dscp=46, vlan=21
    )
    assert switch.process(wrong_vlan).meters == (meter_id(2, DL),)


def test_non_ip_traffic_goes_to_the_default_slice(switch: FakeFlowTable) -> None:
    arp = Packet(in_port=3, eth_type=0x0806)
    assert switch.process(arp).meters == (meter_id(2, UL),)


def test_rate_change_modifies_only_the_changed_meters(policy: Policy) -> None:
    before = desired_tables(policy, _rates(), CONFIG)
    after = desired_tables(policy, _rates(factory=9e6), CONFIG)
    ops = diff_tables(before, after)
    assert {type(op) for op in ops} == {MeterOp}
    assert sorted(op.meter.meter_id for op in ops if isinstance(op, MeterOp)) == [
        meter_id(1, DL),
        meter_id(1, UL),
    ]
    assert all(op.command == "modify" for op in ops if isinstance(op, MeterOp))
    assert diff_tables(after, after) == []


def test_unmetering_a_slice_changes_its_flows_before_deleting_its_meter(
    policy: Policy, switch: FakeFlowTable
) -> None:
    before = desired_tables(policy, _rates(), CONFIG)
    rates = _rates()
    rates[("surgery", UL)] = float("inf")
    after = desired_tables(policy, rates, CONFIG)
    ops = diff_tables(before, after)
    switch.apply(ops)  # the fake switch rejects deleting a meter still in use
    assert meter_id(0, UL) not in switch.meters
    pkt = Packet(
        in_port=2, ip_proto=17, src_ip="10.0.0.2", dst_ip="10.0.0.1", src_port=1, dst_port=5000
    )
    assert switch.process(pkt).meters == ()
    kinds = [(type(op).__name__, op.command) for op in ops if not isinstance(op, ClearAll)]
    assert kinds.index(("FlowOp", "modify")) < kinds.index(("MeterOp", "delete"))


def test_policy_without_default_slice_forwards_unmatched_unmetered(
    policy_without_default: Policy,
) -> None:
    table = FakeFlowTable()
    table.apply(full_install(desired_tables(policy_without_default, {}, CONFIG)))
    verdict = table.process(Packet(in_port=2, eth_type=0x0806))
    assert verdict.meters == ()
    assert verdict.output_port == OFPP_NORMAL


def test_meter_rounding_burst_and_floor() -> None:
    assert meter_for(5, 20e6, CONFIG).rate_kbps == 20000
    assert meter_for(5, 20e6, CONFIG).burst_kbits == 10000
    assert meter_for(5, 0.0, CONFIG).rate_kbps == 1
    assert meter_for(5, 100e3, CONFIG).burst_kbits == 64
    assert meter_for(5, 10e3, CONFIG).burst_kbits == 64
    assert meter_for(5, 1e13, CONFIG).rate_kbps == 0xFFFFFFFF
    assert meter_for(5, 1e13, CONFIG).burst_kbits == 0x80000000  # half a second of it
    with pytest.raises(ControllerConfigError, match="not a rate"):
        meter_for(5, float("nan"), CONFIG)


def test_unknown_slice_and_bad_array_are_rejected(policy: Policy) -> None:
    with pytest.raises(ControllerConfigError, match="not in policy"):
        desired_tables(policy, {("video", DL): 1e6}, CONFIG)
    with pytest.raises(ControllerConfigError, match="3 slices"):
        rates_from_array(policy, [[1.0, 2.0]])
    assert rates_from_array(policy, [[1, 2], [3, 4], [5, 6]])[("factory", UL)] == 4.0


def test_config_rejects_missing_core_port() -> None:
    with pytest.raises(ControllerConfigError, match="core_ports"):
        EnforcementConfig(core_ports=())


@pytest.mark.parametrize(
    ("first", "last"), [(0, 0), (5000, 5000), (5201, 5203), (6000, 6100), (1, 65535), (0, 65535)]
)
def test_port_blocks_cover_exactly(first: int, last: int) -> None:
    covered = {p for v, m in port_blocks(first, last) for p in range(v, v + ((~m) & 0xFFFF) + 1)}
    assert covered == set(range(first, last + 1))


def test_full_install_starts_with_clear_and_adds_meters_before_flows(policy: Policy) -> None:
    ops = full_install(desired_tables(policy, _rates(), CONFIG))
    assert isinstance(ops[0], ClearAll)
    first_flow = next(i for i, op in enumerate(ops) if isinstance(op, FlowOp))
    assert all(isinstance(op, MeterOp) for op in ops[1:first_flow])
    assert len([op for op in ops if isinstance(op, MeterOp)]) == 6
