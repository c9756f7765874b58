"""Per-slice E2SM-KPM names (``DRB.UEThpDl.SNSSAI`` ...) over gRPC, and
``client watch --format rrm-policy``, against a real server on loopback."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from sliceai.api import commands
from sliceai.api.client import SliceaiClient
from sliceai.cli import run
from sliceai.usage import UsageError

POLICY = Path(__file__).resolve().parents[2] / "policies" / "hospital.yaml"


def _code(call: Callable[[], Any]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    code: grpc.StatusCode = info.value.code()
    return code


def test_per_slice_kpm_names_are_matched_by_snssai(start_server: Callable[..., Any]) -> None:
    running = start_server()
    with SliceaiClient(running.target) as client:
        n = client.push_kpm(
            "e2-1",
            [
                ("DRB.UEThpDl.SNSSAI", "1-0000B1", 3000.0),  # consults, kbit/s
                ("DRB.UEThpUl.SNSSAI", "sST=1,sD=0000b1", 1000.0),
                ("DRB.UEThpDl.SNSSAI", '{"sST": 3, "sD": "0000C1"}', 250.0),  # vitals
                ("RRU.PrbUsedDl.SNSSAI", "3-0000C1", 17.0),  # PRBs: never a rate
            ],
        )
        assert n == 2  # consults and vitals: the PRB count is not a rate
        latest = running.engine.buffer.latest("e2-1", ["consults", "vitals", "surgery-video"])
        assert latest[0].tolist() == [3e6, 1e6]
        assert latest[1, 0] == 250e3
        assert np.isnan(latest[2]).all()  # nothing reported for it

        # PRB usage alone stores no demand
        assert client.push_kpm("e2-2", [("RRU.PrbUsedDl.SNSSAI", "1-0000B1", 40.0)]) == 0
        assert np.isnan(running.engine.buffer.latest("e2-2", ["consults"])).all()

        push = client.push_kpm
        # the label of a .SNSSAI name is an S-NSSAI, never a slice name
        assert _code(lambda: push("e2-1", [("DRB.UEThpDl.SNSSAI", "consults", 1.0)])) == (
            grpc.StatusCode.INVALID_ARGUMENT
        )
        assert _code(lambda: push("e2-1", [("DRB.UEThpDl.SNSSAI", "1-00BEEF", 1.0)])) == (
            grpc.StatusCode.NOT_FOUND
        )
        # rates pass the one validation every telemetry path has
        for bad in (-1.0, float("nan"), 1e20):
            assert _code(lambda v=bad: push("e2-1", [("DRB.UEThpDl.SNSSAI", "1-0000B1", v)])) == (
                grpc.StatusCode.INVALID_ARGUMENT
            )
        assert _code(lambda: push("e2-1", [("DRB.UEThpXx.SNSSAI", "1-0000B1", 1.0)])) == (
            grpc.StatusCode.INVALID_ARGUMENT
        )
        # a refused report changed nothing
        assert running.engine.buffer.latest("e2-1", ["consults"])[0].tolist() == [3e6, 1e6]


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sliceai")
    commands.register(parser.add_subparsers())
    return run(parser.parse_args(argv))


def test_watch_renders_plans_as_rrm_policy_ratio(
    start_server: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    running = start_server(interval_s=0.05)
    with SliceaiClient(running.target) as client:
        client.push_kpm("e2-1", [("DRB.UEThpDl.SNSSAI", "1-0000B1", 52000.0)])
    target = ["client", "--target", running.target]
    assert (
        _run([*target, "watch", "--count", "2", "--format", "rrm-policy", "--plmn", "208-93"]) == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        doc = json.loads(line)
        ratios = doc["rRMPolicyRatio"]
        # the first link (cell-backhaul) carries all five slices
        assert [r["id"] for r in ratios] == [
            "surgery-haptics",
            "surgery-video",
            "consults",
            "vitals",
            "staff-embb",
        ]
        for r in ratios:
            a = r["attributes"]
            assert a["resourceType"] == "PRB"
            assert 0 <= a["rRMPolicyDedicatedRatio"] <= a["rRMPolicyMinRatio"]
            assert a["rRMPolicyMinRatio"] <= a["rRMPolicyMaxRatio"] <= 100
            assert a["rRMPolicyMemberList"][0]["plmnId"] == {"mcc": "208", "mnc": "93"}
        assert sum(r["attributes"]["rRMPolicyMinRatio"] for r in ratios) <= 100
        video = next(r["attributes"] for r in ratios if r["id"] == "surgery-video")
        assert video["rRMPolicyDedicatedRatio"] == 7  # 35 Mbps of 500 Mbps
        assert video["rRMPolicyMaxRatio"] == 12  # 60 Mbps of 500 Mbps
        assert video["rRMPolicyMemberList"][0]["sNSSAI"] == {"sst": 2, "sd": "0000A2"}

    # from a policy file, one slice, the other link and its UL PRBs
    argv = [*target, "watch", "--count", "1", "--format", "rrm-policy", "--policy", str(POLICY)]
    argv += ["--slices", "vitals", "--link", "mec-uplink", "--resource-type", "PRB_UL"]
    assert _run(argv) == 0
    (doc,) = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    (vitals,) = doc["rRMPolicyRatio"]
    assert vitals["id"] == "vitals"
    assert vitals["attributes"]["resourceType"] == "PRB_UL"
    assert vitals["attributes"]["rRMPolicyDedicatedRatio"] == 1  # 5 Mbps UL of 1 Gbps
    assert vitals["attributes"]["rRMPolicyMaxRatio"] == 2  # 20 Mbps UL of 1 Gbps

    bad = [*target, "watch", "--format", "rrm-policy", "--policy", str(POLICY), "--link", "x"]
    with pytest.raises(UsageError, match="the policy's links are cell-backhaul, mec-uplink"):
        _run(bad)
