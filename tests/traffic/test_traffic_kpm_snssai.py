"""``trace convert --preset kpm-snssai``: per-slice E2SM-KPM columns (DRB.UEThpDl.SNSSAI ...)
matched to the policy's slices by S-NSSAI; PRB counts never read as rates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sliceai.cli import main
from sliceai.policy import Policy, load_policy
from sliceai.traffic import Trace
from sliceai.traffic.longcsv import read_long_csv
from sliceai.traffic.mapped import ColumnMapping, read_mapped_csv

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "hospital.yaml"
T0 = 1767600000000  # epoch ms


def _report(path: Path, prb: int = 40, n: int = 20) -> Path:
    rows = ["timestamp,sST,sD,DRB.UEThpDl.SNSSAI,DRB.UEThpUl.SNSSAI,RRU.PrbUsedDl.SNSSAI"]
    for k in range(n):
        t = T0 + k * 1000
        rows.append(f"{t},1,0000B1,{3000 + k},1000,{prb}")  # consults, UE 1
        rows.append(f"{t},1,0000b1,500,0,{prb}")  # consults, UE 2: summed
        rows.append(f"{t},3,0000C1,250,500,{prb}")  # vitals
    path.write_text("\n".join(rows) + "\n")
    return path


def _convert(src: Path, out: Path) -> Trace:
    argv = ["trace", "convert", str(src), "--preset", "kpm-snssai", "--policy", str(POLICY)]
    assert main([*argv, "-o", str(out)]) == 0
    return Trace.concat(read_long_csv(out))


def test_kpm_columns_become_slice_rates_by_snssai(tmp_path: Path) -> None:
    trace = _convert(_report(tmp_path / "r.csv"), tmp_path / "out.csv")
    assert trace.interval_s == 1.0
    consults = trace.load_bps[:, trace.slices.index("consults")]
    assert consults[:, 0].tolist() == [(3500 + k) * 1e3 for k in range(20)]  # kbit/s summed
    assert consults[:, 1].tolist() == [1e6] * 20
    vitals = trace.load_bps[:, trace.slices.index("vitals")]
    assert vitals[:, 0].tolist() == [250e3] * 20
    # PRB counts are not read: another PRB column gives the same trace
    other = _convert(_report(tmp_path / "r2.csv", prb=99999), tmp_path / "out2.csv")
    assert np.array_equal(other.load_bps, trace.load_bps)


def test_one_snssai_column_in_any_label_form(tmp_path: Path) -> None:
    src = tmp_path / "one.csv"
    rows = ["time,snssai,DRB.UEThpDl"]
    for k in range(5):
        rows += [f"{T0 + k * 1000},sST=1;sD=0000B1,2000", f"{T0 + k * 1000},2-0000a2,7000"]
    src.write_text("\n".join(rows) + "\n")
    mapping = ColumnMapping(
        time_column="time",
        slice_column="snssai",
        dl_column="DRB.UEThpDl",
        value_unit="kbps",
        slice_is_snssai=True,
    )
    from_lib = Trace.concat(list(read_mapped_csv(src, mapping, interval_s=1.0, policy=_policy())))
    trace = _convert(src, tmp_path / "out.csv")
    assert np.array_equal(trace.load_bps, from_lib.load_bps, equal_nan=True)
    assert trace.load_bps[0, trace.slices.index("consults"), 0] == 2e6
    assert trace.load_bps[0, trace.slices.index("surgery-video"), 0] == 7e6


def _policy() -> Policy:
    return load_policy(POLICY)


def test_a_bad_snssai_names_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "bad.csv"
    src.write_text(f"timestamp,sST,sD,DRB.UEThpDl.SNSSAI\n{T0},1,0000B1,1\n{T0 + 1000},1,00B1,1\n")
    argv = ["trace", "convert", str(src), "--preset", "kpm-snssai", "--policy", str(POLICY)]
    assert main([*argv, "-o", str(tmp_path / "o.csv"), "--interval", "1s"]) != 0
    err = capsys.readouterr().err
    assert "bad.csv: line 3: slice:" in err
    assert "SD '00B1' is not 6 hex digits" in err
