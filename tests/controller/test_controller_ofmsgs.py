"""The os-ken adapter: plain operations -> OpenFlow 1.3 messages that serialize and parse back."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from sliceai.controller.commands import build_parser
from sliceai.controller.flows import (
    ControllerConfigError,
    EnforcementConfig,
    desired_tables,
    full_install,
    meter_id,
)
from sliceai.controller.ofmsgs import messages, stats_requests
from sliceai.controller.settings import settings_from_args
from sliceai.policy import Direction, Policy

ofproto_v1_3 = pytest.importorskip("os_ken.ofproto.ofproto_v1_3")
parser_v1_3 = pytest.importorskip("os_ken.ofproto.ofproto_v1_3_parser")


class _Datapath:
    """What the adapter needs of a datapath: its protocol modules and an xid."""

    ofproto = ofproto_v1_3
    ofproto_parser = parser_v1_3
    xid = 0

    def set_xid(self, msg: Any) -> int:
        self.xid += 1
        msg.set_xid(self.xid)
        return self.xid


def _serialize(dp: _Datapath, msg: Any) -> Any:
    dp.set_xid(msg)
    msg.serialize()
    return msg


def _parse_flow_mod(dp: _Datapath, msg: Any) -> Any:
    """Serialize a flow mod and parse the bytes back (os-ken parses flow mods, not meter mods)."""
    if msg.xid is None:
        _serialize(dp, msg)
    return parser_v1_3.OFPFlowMod.parser(dp, 4, msg.msg_type, msg.msg_len, msg.xid, bytes(msg.buf))


def test_full_install_serializes_with_meters_and_instructions(policy: Policy) -> None:
    rates = {(n, d): 5e6 for n in policy.slice_names for d in (Direction.DL, Direction.UL)}
    dp = _Datapath()
    config = EnforcementConfig(core_ports=(1,))
    msgs = [
        _serialize(dp, m) for m in messages(dp, full_install(desired_tables(policy, rates, config)))
    ]
    meter_mods = [m for m in msgs if isinstance(m, parser_v1_3.OFPMeterMod)]
    flow_mods = [_parse_flow_mod(dp, m) for m in msgs if isinstance(m, parser_v1_3.OFPFlowMod)]
    assert meter_mods[0].meter_id == ofproto_v1_3.OFPM_ALL  # the clear-all deletes every meter
    add = [m for m in meter_mods if m.command == ofproto_v1_3.OFPMC_ADD]
    assert len(add) == 6
    assert (add[0].bands[0].rate, add[0].bands[0].burst_size) == (5000, 2500)
    assert flow_mods[0].command == ofproto_v1_3.OFPFC_DELETE  # the clear-all first
    surgery_ul = meter_id(0, Direction.UL)
    udp_ul = [
        f
        for f in flow_mods
        if dict(f.match.items()).get("udp_dst") == 5000 and "in_port" not in dict(f.match.items())
    ]
    assert len(udp_ul) == 2  # IPv4 and IPv6
    for f in udp_ul:
        meters = [
            i.meter_id for i in f.instructions if isinstance(i, parser_v1_3.OFPInstructionMeter)
        ]
        assert meters == [surgery_ul]


def test_masked_port_range_survives_serialization(policy: Policy) -> None:
    dp = _Datapath()
    config = EnforcementConfig(core_ports=(1,))
    msgs = messages(dp, full_install(desired_tables(policy, {}, config)))
    matches = [
        dict(_parse_flow_mod(dp, m).match.items())
        for m in msgs
        if isinstance(m, parser_v1_3.OFPFlowMod)
    ]
    assert any(m.get("tcp_dst") == (5202, 0xFFFE) for m in matches)
    assert any(m.get("tcp_src") == 5201 for m in matches)


def test_stats_requests_build() -> None:
    dp = _Datapath()
    meter_req, port_req = stats_requests(dp)
    for req in (meter_req, port_req):
        req.serialize()
        assert len(req.buf) == 24
    assert meter_req.meter_id == ofproto_v1_3.OFPM_ALL
    assert port_req.port_no == ofproto_v1_3.OFPP_ANY


def _args(tmp_path: Path, *extra: str) -> argparse.Namespace:
    policy = tmp_path / "p.yaml"
    policy.write_text("x")
    return build_parser().parse_args(["--policy", str(policy), *extra])


def test_settings_from_args(tmp_path: Path) -> None:
    s = settings_from_args(
        _args(
            tmp_path,
            "--optimizer",
            "localhost:50051",
            "--core-ports",
            "1,3",
            "--fallback-after",
            "12",
        )
    )
    assert s.link.target == "localhost:50051"
    assert s.enforcement.core_ports == (1, 3)
    assert s.fallback_after_s == 12.0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--fallback-after", "0"), "--fallback-after"),
        (("--poll-interval", "0.001"), "--poll-interval"),
        (("--tls-cert", "c.pem"), "--tls-key"),
        (("--burst", "0"), "burst_s"),
    ],
)
def test_bad_settings_are_named(tmp_path: Path, extra: tuple[str, ...], message: str) -> None:
    with pytest.raises(ControllerConfigError, match=message):
        settings_from_args(_args(tmp_path, *extra))


def test_bad_optimizer_address(tmp_path: Path) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="HOST:PORT"):
        settings_from_args(_args(tmp_path, "--optimizer", "nohostport"))
