"""Which plan runs and what each switch gets: fallback timing with an injected clock."""

from __future__ import annotations

import pytest

from sliceai.controller.core import ControllerCore, PlanKeeper, PlanSource
from sliceai.controller.fake_table import FakeFlowTable, Packet
from sliceai.controller.flows import EnforcementConfig, MeterOp, meter_id
from sliceai.policy import Direction, Policy

CONFIG = EnforcementConfig(core_ports=(1,))
DL, UL = Direction.DL, Direction.UL


def _plan(bps: float) -> dict[tuple[str, Direction], float]:
    return {(n, d): bps for n in ("surgery", "factory", "embb") for d in (DL, UL)}


def test_startup_runs_guarantees_then_the_service_plan(policy: Policy) -> None:
    keeper = PlanKeeper(policy, fallback_after_s=10.0, now=0.0)
    rates, source = keeper.current(0.0)
    assert source is PlanSource.STARTUP
    assert rates[("factory", UL)] == 5e6
    keeper.service_heard(1.0)
    keeper.plan_received(_plan(7e6), now=1.0, version=3)
    assert keeper.current(1.0) == (_plan(7e6), PlanSource.SERVICE)
    assert keeper.plan_version == 3


def test_last_plan_kept_until_fallback_after(policy: Policy) -> None:
    keeper = PlanKeeper(policy, fallback_after_s=10.0, now=0.0)
    keeper.service_heard(0.0)
    keeper.plan_received(_plan(7e6), now=5.0)
    keeper.service_lost(now=20.0)
    assert keeper.current(29.9) == (_plan(7e6), PlanSource.LAST_PLAN)
    rates, source = keeper.current(30.0)
    assert source is PlanSource.FALLBACK
    assert rates[("surgery", DL)] == 2e6
    keeper.service_heard(31.0)
    keeper.plan_received(_plan(3e6), now=31.0)
    assert keeper.current(31.0)[1] is PlanSource.SERVICE


def test_fallback_after_must_be_positive(policy: Policy) -> None:
    with pytest.raises(ValueError, match="fallback_after_s"):
        PlanKeeper(policy, fallback_after_s=0.0, now=0.0)


def test_core_installs_on_connect_and_syncs_each_datapath(policy: Policy) -> None:
    core = ControllerCore(policy, CONFIG, fallback_after_s=5.0, now=0.0)
    switches = {1: FakeFlowTable(), 2: FakeFlowTable()}
    for dpid, table in switches.items():
        table.apply(core.datapath_up(dpid, now=0.0))
    assert switches[1].meters[meter_id(1, UL)].rate_kbps == 5000
    out = core.plan_received(_plan(9e6), now=1.0)
    assert set(out) == {1, 2}
    for dpid, ops in out.items():
        assert all(isinstance(op, MeterOp) and op.command == "modify" for op in ops)
        switches[dpid].apply(ops)
    assert switches[2].meters[meter_id(0, DL)].rate_kbps == 9000
    assert core.tick(now=2.0) == {}  # nothing changed


def test_core_falls_back_on_tick_and_keeps_enforcing_meanwhile(policy: Policy) -> None:
    core = ControllerCore(policy, CONFIG, fallback_after_s=5.0, now=0.0)
    table = FakeFlowTable()
    table.apply(core.datapath_up(1, now=0.0))
    core.service_heard(0.0)
    table.apply(core.plan_received(_plan(9e6), now=0.5)[1])
    core.service_lost(now=1.0)
    assert core.tick(now=5.9) == {}
    assert table.meters[meter_id(0, DL)].rate_kbps == 9000
    ops = core.tick(now=6.0)[1]
    table.apply(ops)
    assert table.meters[meter_id(0, DL)].rate_kbps == 2000
    assert table.meters[meter_id(2, UL)].rate_kbps == 1000
    pkt = Packet(
        in_port=1, ip_proto=17, src_ip="1.1.1.1", dst_ip="2.2.2.2", src_port=5000, dst_port=9
    )
    assert table.process(pkt).meters == (meter_id(0, DL),)


def test_reconnect_reinstalls_everything(policy: Policy) -> None:
    core = ControllerCore(policy, CONFIG, fallback_after_s=5.0, now=0.0)
    core.service_heard(0.0)
    core.plan_received(_plan(4e6), now=0.0)
    core.datapath_up(1, now=0.0)
    core.datapath_down(1)
    fresh = FakeFlowTable()
    fresh.apply(core.datapath_up(1, now=1.0))
    assert fresh.meters[meter_id(1, DL)].rate_kbps == 4000
    assert len(fresh.flows) == len(core.installed(1).flows)


def test_bad_plan_changes_nothing(policy: Policy) -> None:
    core = ControllerCore(policy, CONFIG, fallback_after_s=5.0, now=0.0)
    core.datapath_up(1, now=0.0)
    with pytest.raises(ValueError, match="not in policy"):
        core.plan_received({("ghost", DL): 1e6}, now=1.0)
    assert core.keeper.current(1.0)[1] is PlanSource.STARTUP


def test_nan_or_negative_plan_is_rejected_before_it_is_kept(policy: Policy) -> None:
    core = ControllerCore(policy, CONFIG, fallback_after_s=5.0, now=0.0)
    core.datapath_up(1, now=0.0)
    bad = _plan(1e6)
    bad[("embb", DL)] = float("nan")
    with pytest.raises(ValueError, match="not a rate"):
        core.plan_received(bad, now=1.0)
    bad[("embb", DL)] = -5.0
    with pytest.raises(ValueError, match="not a rate"):
        core.plan_received(bad, now=1.0)
    assert core.tick(now=2.0) == {}


def test_policy_change_rebuilds_flows(policy: Policy, policy_without_default: Policy) -> None:
    core = ControllerCore(policy, CONFIG, fallback_after_s=5.0, now=0.0)
    table = FakeFlowTable()
    table.apply(core.datapath_up(1, now=0.0))
    table.apply(core.policy_received(policy_without_default, now=1.0)[1])
    http = Packet(
        in_port=2, ip_proto=6, src_ip="1.1.1.1", dst_ip="2.2.2.2", src_port=3, dst_port=80
    )
    assert table.process(http).meters == (meter_id(2, UL),)
    assert table.process(Packet(in_port=2, eth_type=0x0806)).meters == ()
