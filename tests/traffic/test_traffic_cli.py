"""``sliceai sim`` and ``sliceai trace convert|info`` end to end (in process)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sliceai.cli import main
from sliceai.traffic import Trace
from sliceai.traffic.longcsv import read_long_csv
from sliceai.traffic.readers import load_trace

ROOT = Path(__file__).resolve().parents[2]


def test_sim_writes_a_reproducible_readable_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "f.csv"
    args = [
        "sim",
        "factory",
        "--days",
        "0.02",
        "--interval",
        "10s",
        "--seed",
        "4",
        "--start",
        "2026-03-02",
    ]
    assert main([*args, "-o", str(out)]) == 0
    assert "173 intervals x 5 slices" in capsys.readouterr().out
    trace = Trace.concat(read_long_csv(out))
    assert trace.interval_s == 10.0
    assert trace.start == 1772409600.0  # 2026-03-02 00:00 UTC
    assert trace.slices == (
        "motion-control",
        "safety-alarms",
        "video-inspection",
        "firmware-bulk",
        "office-embb",
    )
    again = tmp_path / "g.csv"
    assert main([*args, "-o", str(again)]) == 0
    assert again.read_bytes() == out.read_bytes()


def test_sim_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "hospital", "--interval", "fast", "-o", str(tmp_path / "x.csv")]) == 2
    assert "--interval" in capsys.readouterr().err
    assert main(["sim", "moon-base", "-o", str(tmp_path / "x.csv")]) == 2
    assert "no scenario 'moon-base'" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_convert_mapped_export_never_writes_ue_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "kpm.csv"
    export.write_text(
        "time,slice,imsi,dl_kbps\n"
        "1767571200,staff-embb,001019999912345,800\n"
        "1767571200,staff-embb,001019999954321,200\n"
        "1767571201,consults,001019999912345,50\n"
    )
    out = tmp_path / "out.csv"
    code = main(
        [
            "trace", "convert", str(export), "--time-column", "time", "--slice-column", "slice",
            "--ue-column", "imsi", "--dl-column", "dl_kbps", "--value-unit", "kbps",
            "--policy", str(ROOT / "policies" / "hospital.yaml"), "-o", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    text = out.read_text()
    assert "0010199999" not in text
    trace = load_trace(out)
    np.testing.assert_allclose(trace.load_bps[0, trace.slice_index("staff-embb"), 0], 1e6)
    assert main(["trace", "info", str(out)]) == 0
    assert "staff-embb" in capsys.readouterr().out


def test_info_on_bad_file_reports_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,slice,direction,bps\n1,a,dl,1\n2,a,dl,x\n")
    assert main(["trace", "info", str(bad)]) == 1
    assert f"{bad}: line 3" in capsys.readouterr().err
    out = tmp_path / "never.csv"
    assert main(["trace", "convert", str(bad), "-o", str(out)]) == 1
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [bad]


def test_pcap_info_and_convert(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    import dpkt

    def frame(src: str, dst: str, sport: int, dport: int, dscp: int) -> bytes:
        udp = dpkt.udp.UDP(sport=sport, dport=dport, data=b"x" * 200)
        ip = dpkt.ip.IP(
            src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=17, tos=dscp << 2, data=udp
        )
        return bytes(dpkt.ethernet.Ethernet(src=b"\x01" * 6, dst=b"\x02" * 6, data=ip))

    cap = tmp_path / "theatre.pcap"
    with cap.open("wb") as f:
        writer = dpkt.pcap.Writer(f)
        for k in range(20):
            writer.writepkt(
                frame("10.45.0.9", "192.168.1.5", 40000, 5000, 46), ts=1767571200.0 + 0.1 * k
            )
            writer.writepkt(
                frame("192.168.1.5", "10.45.0.9", 5004, 40000, 34), ts=1767571200.05 + 0.1 * k
            )
    policy = str(ROOT / "policies" / "hospital.yaml")
    assert main(["trace", "info", str(cap), "--policy", policy, "--ue-prefix", "10.45.0.0/16"]) == 0
    out = capsys.readouterr().out
    assert "packets 40" in out
    assert "unmatched 0" in out
    csv_out = tmp_path / "theatre.csv"
    assert (
        main(
            [
                "trace",
                "convert",
                str(cap),
                "--policy",
                policy,
                "--interval",
                "1s",
                "-o",
                str(csv_out),
            ]
        )
        == 0
    )
    trace = load_trace(csv_out)
    bits = 10 * len(frame("10.45.0.9", "192.168.1.5", 40000, 5000, 46)) * 8
    np.testing.assert_allclose(
        trace.load_bps[:, trace.slice_index("surgery-haptics"), 1], [bits, bits]
    )
    np.testing.assert_allclose(
        trace.load_bps[:, trace.slice_index("surgery-video"), 0], [bits, bits]
    )
    assert main(["trace", "info", str(cap)]) == 2  # a capture needs the policy
    assert "needs a policy" in capsys.readouterr().err
