"""Parquet traces (sliceai[scale]): round trip, the same trace as long CSV, errors, dispatch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sliceai.traffic import Trace, TraceReadError, open_trace
from sliceai.traffic.longcsv import write_long_csv
from sliceai.traffic.readers import detect_format, load_trace, write_trace

pytestmark = pytest.mark.scale
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
parquet = pytest.importorskip("sliceai.traffic.parquet")


def _trace(n: int = 500, slices: tuple[str, ...] = ("a", "b", "c"), seed: int = 0) -> Trace:
    rng = np.random.default_rng(seed)
    load = rng.lognormal(13, 1, (n, len(slices), 2))
    load[rng.random(load.shape) < 0.05] = np.nan
    delay = rng.random((n, len(slices), 2))
    return Trace(1_764_547_200.0, 10.0, slices, load, {"delay_ms": delay})


def _same(a: Trace, b: Trace) -> None:
    assert (a.start, a.interval_s, a.slices) == (b.start, b.interval_s, b.slices)
    np.testing.assert_array_equal(a.load_bps, b.load_bps)  # NaN where NaN, bit-exact values
    assert set(a.extras) == set(b.extras)
    for name in a.extras:
        np.testing.assert_array_equal(a.extras[name], b.extras[name])


def test_round_trip_keeps_values_missing_and_extras_exactly(tmp_path: Path) -> None:
    trace = _trace()
    path = tmp_path / "t.parquet"
    assert parquet.write_parquet_trace(trace.chunks(64), path) == trace.n_intervals
    assert pq.ParquetFile(path).num_row_groups == 8  # one row group per chunk written
    chunks = list(parquet.read_parquet_trace(path, chunk_intervals=100, batch_rows=333))
    assert [c.n_intervals for c in chunks] == [100] * 5
    _same(trace, Trace.concat(chunks))
    assert not list(tmp_path.glob(".*tmp"))


def test_reads_the_same_trace_as_the_long_csv(tmp_path: Path) -> None:
    trace = _trace(120)
    write_long_csv(trace, tmp_path / "t.csv", decimals=None)
    write_trace(trace, tmp_path / "t.parquet")
    assert detect_format(tmp_path / "t.parquet") == "parquet"
    from_csv = load_trace(tmp_path / "t.csv")
    from_parquet = load_trace(tmp_path / "t.parquet")
    _same(from_csv, from_parquet)
    # the policy's slice order is honoured, a slice not in the file is all missing
    chunks = list(open_trace(tmp_path / "t.parquet", slices=("c", "b", "a", "zz")))
    again = Trace.concat(chunks)
    np.testing.assert_array_equal(again.load_bps[:, 0], trace.load_bps[:, 2])
    assert np.isnan(again.load_bps[:, 3]).all()
    with pytest.raises(TraceReadError, match="unknown slice 'b'"):  # as the long CSV reader
        list(open_trace(tmp_path / "t.parquet", slices=("a", "c")))


def test_a_file_from_another_tool_has_its_interval_and_slices_inferred(tmp_path: Path) -> None:
    # no sliceai metadata, rows shuffled within each interval, one interval missing
    rows = []
    for t in (0, 1, 2, 4):
        for s in ("x", "y"):
            for d in ("ul", "dl"):
                rows.append((1000.0 + 5 * t, s, d, float(t * 10 + (s == "y") + (d == "ul") * 0.5)))
    table = pa.table(
        {
            k: list(v)
            for k, v in zip(
                ("timestamp", "slice", "direction", "bps"), zip(*rows, strict=True), strict=True
            )
        }
    )
    pq.write_table(table, tmp_path / "other.parquet")
    trace = load_trace(tmp_path / "other.parquet")
    assert (trace.start, trace.interval_s, trace.slices, trace.n_intervals) == (
        1000.0,
        5.0,
        ("x", "y"),
        5,
    )
    assert trace.load_bps[2, 1, 1] == 21.5
    assert np.isnan(trace.load_bps[3]).all()


def test_bad_files_name_the_file_and_row(tmp_path: Path) -> None:
    not_parquet = tmp_path / "bad.parquet"
    not_parquet.write_text("timestamp,slice,direction,bps\n")
    with pytest.raises(TraceReadError, match="cannot read as Parquet"):
        list(open_trace(not_parquet))
    pq.write_table(pa.table({"timestamp": [1.0], "slice": ["a"]}), tmp_path / "cols.parquet")
    with pytest.raises(TraceReadError, match="no column direction, bps"):
        list(open_trace(tmp_path / "cols.parquet"))
    table = pa.table(
        {
            "timestamp": [0.0, 0.0, 1.0, 1.0],
            "slice": ["a", "a", "a", "a"],
            "direction": ["dl", "ul", "dl", "up"],
            "bps": [1.0, 2.0, 3.0, 4.0],
        }
    )
    pq.write_table(table, tmp_path / "dir.parquet")
    with pytest.raises(TraceReadError, match=r"row 3: unknown direction 'up'"):
        list(open_trace(tmp_path / "dir.parquet"))
    table = table.set_column(2, "direction", pa.array(["dl", "ul", "dl", "ul"]))
    table = table.set_column(3, "bps", pa.array([1.0, -2.0, 3.0, 4.0]))
    pq.write_table(table, tmp_path / "neg.parquet")
    with pytest.raises(TraceReadError, match=r"row 1: bps -2.0 is negative"):
        list(open_trace(tmp_path / "neg.parquet"))
