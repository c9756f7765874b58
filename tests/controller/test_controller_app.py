"""The os-ken app shim driven in-process with a fake datapath: no switch, no threads started."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sliceai.controller.flows import EnforcementConfig, meter_id
from sliceai.controller.service_link import LinkEvent, LinkSettings
from sliceai.policy import DIRECTIONS, Direction, Policy

app_module = pytest.importorskip("sliceai.controller.app")
ofproto_v1_3 = pytest.importorskip("os_ken.ofproto.ofproto_v1_3")
parser_v1_3 = pytest.importorskip("os_ken.ofproto.ofproto_v1_3_parser")
handler = pytest.importorskip("os_ken.controller.handler")


class FakeDatapath:
    ofproto = ofproto_v1_3
    ofproto_parser = parser_v1_3

    def __init__(self, dpid: int) -> None:
        self.id = dpid
        self.sent: list[Any] = []
        self._xid = 0

    def send_msg(self, msg: Any) -> None:
        if msg.xid is None:
            self._xid += 1
            msg.set_xid(self._xid)
        msg.serialize()
        self.sent.append(msg)


def _meter_reply(dp: FakeDatapath, counters: dict[int, tuple[int, int]], age_s: float) -> Any:
    body = [
        SimpleNamespace(
            meter_id=mid,
            byte_in_count=seen,
            duration_sec=int(age_s),
            duration_nsec=0,
            band_stats=[SimpleNamespace(byte_band_count=dropped)],
        )
        for mid, (seen, dropped) in counters.items()
    ]
    return SimpleNamespace(msg=SimpleNamespace(datapath=dp, flags=0, body=body))


@pytest.fixture
def controller(policy: Policy, tmp_path: Path) -> Any:
    policy_path = tmp_path / "policy.yaml"
    from sliceai.policy import dump_policy

    policy_path.write_text(dump_policy(policy))
    app_module.configure(
        app_module.AppSettings(
            policy_path=policy_path,
            enforcement=EnforcementConfig(core_ports=(1,)),
            link=LinkSettings(target="127.0.0.1:1"),  # never started: telemetry stays queued
            stats_file=tmp_path / "stats.json",
        )
    )
    return app_module.SliceController()


def _plan(bps: float) -> dict[tuple[str, Direction], float]:
    return {(n, d): bps for n in ("surgery", "factory", "embb") for d in DIRECTIONS}


def test_connect_plan_barrier_stats_and_disconnect(controller: Any, tmp_path: Path) -> None:
    dp = FakeDatapath(0xABC)
    controller._state_change(SimpleNamespace(datapath=dp, state=handler.MAIN_DISPATCHER))
    kinds = [type(m).__name__ for m in dp.sent]
    assert kinds[0] == "OFPFlowMod"
    assert kinds[-1] == "OFPBarrierRequest"
    assert kinds.count("OFPMeterMod") == 1 + 6  # delete-all, then one per slice and direction

    dp.sent.clear()
    now = time.monotonic()
    controller._link(app_module.EventLink(LinkEvent("connected", now)))
    controller._link(app_module.EventLink(LinkEvent("plan", now, _plan(9e6), version=4)))
    mods = [m for m in dp.sent if isinstance(m, parser_v1_3.OFPMeterMod)]
    assert {m.command for m in mods} == {ofproto_v1_3.OFPMC_MODIFY}
    assert {m.bands[0].rate for m in mods} == {9000}
    barrier = dp.sent[-1]
    controller._barrier_reply(SimpleNamespace(msg=SimpleNamespace(datapath=dp, xid=barrier.xid)))
    assert len(controller.apply_latency_ms) == 1

    factory_ul = meter_id(1, Direction.UL)
    controller._meter_stats(_meter_reply(dp, {factory_ul: (1_000, 0)}, 1.0))
    time.sleep(0.05)
    controller._meter_stats(_meter_reply(dp, {factory_ul: (1_000_000, 100_000)}, 2.0))
    state = json.loads((tmp_path / "stats.json").read_text())
    assert state["plan_source"] == "service"
    assert state["plan_version"] == 4
    assert state["meters"]["0000000000000abc"][str(factory_ul)]["rate_kbps"] == 9000
    carried = state["rates"]["factory"]["ul"]["carried_bps"]
    offered = state["rates"]["factory"]["ul"]["offered_bps"]
    assert carried == pytest.approx(offered * 0.9, rel=0.01)
    sent = controller.link._outbox.get_nowait()
    assert list(sent.telemetry.slices) == ["factory"]
    assert sent.telemetry.datapath_id == 0xABC

    controller._state_change(SimpleNamespace(datapath=dp, state=handler.DEAD_DISPATCHER))
    assert controller.core.datapath_ids == ()


def test_bad_plan_and_bad_policy_from_the_service_are_ignored(controller: Any) -> None:
    dp = FakeDatapath(1)
    controller._state_change(SimpleNamespace(datapath=dp, state=handler.MAIN_DISPATCHER))
    dp.sent.clear()
    now = time.monotonic()
    controller._link(app_module.EventLink(LinkEvent("plan", now, {("ghost", Direction.DL): 1e6})))
    controller._link(app_module.EventLink(LinkEvent("policy", now, policy_yaml="name: [broken")))
    assert dp.sent == []
    assert controller.core.keeper.current(now)[1].value == "startup"


def test_only_the_last_switch_of_a_polling_round_ends_the_period(controller: Any) -> None:
    a, b = FakeDatapath(0xA), FakeDatapath(0xB)
    for dp in (a, b):
        controller._state_change(SimpleNamespace(datapath=dp, state=handler.MAIN_DISPATCHER))
    controller._link(app_module.EventLink(LinkEvent("connected", time.monotonic())))
    factory_dl = meter_id(1, Direction.DL)
    for dp in (a, b):  # a first reply per switch sets the counter baselines
        controller._meter_stats(_meter_reply(dp, {factory_dl: (0, 0)}, 1.0))
    time.sleep(0.02)
    controller._tick(app_module.EventTick())
    controller._meter_stats(_meter_reply(a, {factory_dl: (10_000, 0)}, 2.0))
    controller._meter_stats(_meter_reply(b, {factory_dl: (20_000, 0)}, 2.0))
    outbox = controller.link._outbox
    sent = [outbox.get_nowait().telemetry for _ in range(outbox.qsize())]
    assert [(t.datapath_id, t.end_of_period) for t in sent] == [(0xA, False), (0xB, True)]
