"""A per-UE KPM export as a first-time user meets it: one command, no mapping file.

The export is generated (:mod:`kpm_export`): 4 minutes, reports every 250 ms with a few
ms of jitter, one CSV per UE, epoch ms, numeric slice ids, Mbit/s, downlink only.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from kpm_export import POLICY, START_MS, UES, write_kpm_export

from sliceai.cli import main
from sliceai.policy import load_policy, loads_policy
from sliceai.policy.bundled import bundled_policy_path
from sliceai.traffic import ColumnMapping, TraceReadError, load_trace
from sliceai.traffic.detect import infer_interval, snap_interval
from sliceai.traffic.presets import preset_fields


@pytest.fixture
def export(tmp_path: Path) -> Path:
    write_kpm_export(tmp_path / "export")
    return tmp_path / "export"


def _expected_dl_mbps(export: Path) -> dict[str, float]:
    """Mean DL per slice id straight from the files: the sum over UEs of their mean rate
    over the 960 report rounds (a UE not attached counts 0)."""
    totals: dict[str, float] = {}
    for path in sorted(export.glob("*.csv")):
        with path.open() as f:
            rows = list(csv.DictReader(f))
        sid = rows[0]["slice_id"]
        rate = sum(float(r["tx_brate downlink [Mbps]"]) for r in rows) / 960
        totals[sid] = totals.get(sid, 0.0) + rate
    return totals


def test_preset_converts_a_per_ue_export_with_one_command(
    export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "t.csv"
    assert main(["trace", "convert", str(export), "--preset", "kpm-ue", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "interval 250 ms: the median spacing of report times" in err
    trace = load_trace(out)
    assert trace.interval_s == 0.25
    assert trace.start == START_MS / 1000
    assert trace.n_intervals == 960  # 4 minutes; jitter does not make a 961st
    assert trace.slices == ("embb", "mmtc", "urllc")  # slice ids 0, 1, 2, from every file
    assert np.isnan(trace.load_bps[:, :, 1]).all()  # no uplink in the export: missing
    assert not np.isnan(trace.load_bps[:, :, 0]).any()
    expected = _expected_dl_mbps(export)
    for sid, name in (("0", "embb"), ("1", "mmtc"), ("2", "urllc")):
        got = trace.load_bps[:, trace.slice_index(name), 0].mean() / 1e6
        assert got == pytest.approx(expected[sid], rel=1e-3)
    # both URLLC UEs report every round: the slice carries their sum (~3 Mbit/s) in every
    # interval, not the mean of jittered report times
    urllc = trace.load_bps[:, trace.slice_index("urllc"), 0]
    assert (urllc > 1.5e6).all()
    assert "001010" not in out.read_text()  # IMSIs are never written


def test_dry_run_prints_what_it_detected_and_writes_nothing(
    export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "t.csv"
    argv = ["trace", "convert", str(export), "--preset", "kpm-ue", "--dry-run", "-o", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert not out.exists()
    assert f"files: {len(UES)}" in text
    assert "tx_brate downlink [Mbps]" in text
    assert "time unit: ms (epoch milliseconds)" in text
    assert "interval 250 ms" in text
    assert "slices: embb, mmtc, urllc" in text
    assert "'1' -> mmtc" in text
    assert "directions: dl only" in text
    n_rows = sum(len(p.read_text().splitlines()) - 1 for p in export.glob("*.csv"))
    assert f"rows: {n_rows}, {len(UES)} UEs" in text
    assert not [ln for ln in text.splitlines() if "001010" in ln and ".csv" not in ln]  # IMSIs


def test_a_mapping_file_alone_reads_slices_from_every_file_and_infers_the_interval(
    export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the report of issue #30: a mapping naming 0 and 2, the first file holding only 0
    mapping = tmp_path / "map.yaml"
    mapping.write_text(
        "time_column: Timestamp\nslice_column: slice_id\nue_column: IMSI\n"
        "dl_column: tx_brate downlink [Mbps]\nvalue_unit: Mbps\nmerge: true\n"
        "slice_names: {'0': eMBB, '1': mmtc, '2': urllc}\n"
    )
    out = tmp_path / "t.csv"
    assert main(["trace", "convert", str(export), "--mapping", str(mapping), "-o", str(out)]) == 0
    assert "250 ms" in capsys.readouterr().err
    trace = load_trace(out)
    assert trace.slices == ("embb", "mmtc", "urllc")  # names lower case, as in a policy
    assert trace.interval_s == 0.25


def test_preset_with_a_policy_and_renamed_slices(
    export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY.replace("embb", "video"))
    out = tmp_path / "t.csv"
    base = ["trace", "convert", str(export), "--preset", "kpm-ue", "--policy", str(policy)]
    assert main([*base, "-o", str(out)]) == 1
    assert "unknown slice '0': map it to one of video, mmtc, urllc" in capsys.readouterr().err
    assert main([*base, "--slice-name", "0=Video", "-o", str(out)]) == 0
    assert load_trace(out).slices == loads_policy(POLICY.replace("embb", "video")).slice_names


def test_overlapping_files_without_merge_say_how_to_read_them(export: Path) -> None:
    header = (export / "ue_1_001010000000001.csv").read_text().split("\n")[0].split(",")
    fields = {**preset_fields("kpm-ue", header, export), "merge": False}
    with pytest.raises(TraceReadError, match="read them side by side with --merge"):
        load_trace(export, mapping=ColumnMapping.model_validate(fields), chunk_intervals=64)


def test_preset_names_the_missing_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "a.csv").write_text(
        "when,slice_id,dl_mbps\n1767571200000,0,1\n1767571201000,0,2\n"
    )
    argv = ["trace", "convert", str(tmp_path / "e"), "--preset", "kpm-ue", "--dry-run"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "preset kpm-ue: no time column" in err
    assert "'timestamp'" in err
    assert "--time-column" in err
    assert main([*argv, "--time-column", "when"]) == 0


@pytest.mark.parametrize(
    ("median", "interval"), [(0.2497, 0.25), (1.02, 1.0), (0.1, 0.25), (7.3, 7.3), (29.0, 30.0)]
)
def test_snap_interval(median: float, interval: float) -> None:
    assert snap_interval(median) == interval


def test_infer_interval_uses_the_median_spacing(tmp_path: Path) -> None:
    # one gap of a minute among 10 s reports: the median is still 10 s
    times = [0, 10, 20, 30, 90, 100, 110]
    path = tmp_path / "a.csv"
    path.write_text("t,s,v\n" + "".join(f"{1.7e9 + t},x,1\n" for t in times))
    mapping = ColumnMapping(time_column="t", slice_column="s", dl_column="v")
    got = infer_interval([path], mapping)
    assert got.interval_s == 10.0
    assert got.median_s == 10.0
    assert "median spacing" in got.sentence()


def test_the_shipped_ran_policy_names_the_preset_slices_and_replays_the_export(
    export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = bundled_policy_path("ran-3slice.yaml")
    out = tmp_path / "t.csv"
    argv = ["trace", "convert", str(export), "--preset", "kpm-ue", "--policy", str(policy)]
    assert main([*argv, "-o", str(out)]) == 0
    assert load_trace(out).slices == load_policy(policy).slice_names == ("embb", "mmtc", "urllc")
    report = tmp_path / "report"
    replay = ["replay", str(out), "--policy", str(policy), "--allocator", "static,oracle"]
    assert main([*replay, "--report", str(report)]) == 0
    summary = capsys.readouterr().out
    assert "UL: no demand anywhere in the trace" in summary
    assert (report / "allocation_dl.png").is_file()
    assert not (report / "allocation_ul.png").exists()
