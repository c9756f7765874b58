"""``sliceai replay`` and ``sliceai demo``: outputs and exit codes; bundled policy copies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sliceai.cli import main
from sliceai.policy import load_policy
from sliceai.traffic import Trace
from sliceai.traffic.longcsv import write_long_csv

REPO = Path(__file__).resolve().parents[2]
CAMPUS_PATH = REPO / "policies" / "campus.yaml"


@pytest.fixture
def trace_csv(tmp_path: Path) -> Path:
    policy = load_policy(CAMPUS_PATH)
    rng = np.random.default_rng(0)
    load = rng.uniform(0.0, 3e6, (40, len(policy.slices), 2))
    path = tmp_path / "trace.csv"
    write_long_csv(Trace(1_764_547_200.0, 1.0, policy.slice_names, load), path)
    return path


def test_replay_writes_table_json_and_plots(trace_csv, tmp_path, capsys):
    out_json = tmp_path / "out" / "r.json"
    report = tmp_path / "report"
    code = main(
        [
            "replay",
            str(trace_csv),
            "--policy",
            str(CAMPUS_PATH),
            "--allocator",
            "static,ewma",
            "--json",
            str(out_json),
            "--report",
            str(report),
            "--no-progress",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "static" in printed
    assert "ewma" in printed
    assert "40 intervals" in printed
    data = json.loads(out_json.read_text())
    assert data["intervals"] == 40
    assert set(data["allocators"]) == {"static", "ewma"}
    assert json.loads((report / "report.json").read_text()) == data
    assert (report / "allocation_dl.png").is_file()
    assert (report / "violation_vs_overprovisioning.png").is_file()


def test_missing_trace_is_exit_2(tmp_path, capsys):
    code = main(["replay", str(tmp_path / "nope.csv"), "--policy", str(CAMPUS_PATH)])
    assert code == 2
    assert "nope.csv" in capsys.readouterr().err


def test_malformed_trace_is_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "timestamp,slice,direction,bps\n0,surgery-video,dl,12\n1,surgery-video,sideways,3\n"
    )
    assert main(["replay", str(bad), "--policy", str(CAMPUS_PATH), "--no-progress"]) == 2
    assert "bad.csv" in capsys.readouterr().err


def test_invalid_policy_is_exit_1(trace_csv, tmp_path, capsys):
    policy = tmp_path / "bad.yaml"
    policy.write_text(CAMPUS_PATH.read_text().replace("capacity: 1 Gbps", "capacity: 1 Mbps"))
    assert main(["replay", str(trace_csv), "--policy", str(policy), "--no-progress"]) == 1
    assert "bad.yaml" in capsys.readouterr().err


def test_missing_policy_is_exit_2(trace_csv, tmp_path):
    code = main(["replay", str(trace_csv), "--policy", str(tmp_path / "none.yaml")])
    assert code == 2


def test_unknown_allocator_is_exit_2(trace_csv, capsys):
    code = main(["replay", str(trace_csv), "--policy", str(CAMPUS_PATH), "--allocator", "magic"])
    assert code == 2
    assert "unknown allocator 'magic'" in capsys.readouterr().err


def test_demo_writes_trace_report_and_plots(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(
        [
            "demo",
            "--out",
            str(out),
            "--days",
            "0.1",
            "--interval",
            "60s",
            "--allocator",
            "static,oracle",
            "--no-progress",
        ]
    )
    assert code == 0
    assert "oracle" in capsys.readouterr().out
    data = json.loads((out / "report.json").read_text())
    assert data["policy"] == "campus"
    assert data["intervals"] == 144
    assert set(data["allocators"]["oracle"]["slices"]) == set(load_policy(CAMPUS_PATH).slice_names)
    for name in ("campus-trace.csv", "allocation_dl.png", "violation_vs_overprovisioning.png"):
        assert (out / name).is_file()


def test_bundled_policies_match_the_repository_copies():
    bundled = REPO / "sliceai" / "data" / "policies"
    repo = sorted(p.name for p in (REPO / "policies").glob("*.yaml"))
    assert sorted(p.name for p in bundled.glob("*.yaml")) == repo
    for name in repo:
        assert (bundled / name).read_bytes() == (REPO / "policies" / name).read_bytes(), name
