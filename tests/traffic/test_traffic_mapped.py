"""Column-mapped CSV (RAN/xApp/KPM exports): mappings, units, UE aggregation, directories, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from sliceai.policy import load_policy
from sliceai.traffic import Trace, TraceError, TraceReadError
from sliceai.traffic.mapped import ColumnMapping, load_mapping, read_mapped_csv

ROOT = Path(__file__).resolve().parents[2]
KPM = """timestamp,snssai,imsi,DRB.UEThpDl,DRB.UEThpUl
2026-01-05T00:00:00.100Z,1-0000B1,001010000000001,1000,200
2026-01-05T00:00:00.100Z,1-0000B1,001010000000002,3000,400
2026-01-05T00:00:00.600Z,1-0000B1,001010000000001,2000,200
2026-01-05T00:00:00.600Z,2-0000A1,001010000000003,500,
2026-01-05T00:00:01.100Z,1-0000B1,001010000000001,1000,100
2026-01-05T00:00:03.100Z,1-0000B1,001010000000001,1000,100
"""
MONDAY = 1767571200.0
KPM_MAPPING = ColumnMapping(
    time_column="timestamp",
    time_unit="iso",
    slice_column="snssai",
    ue_column="imsi",
    dl_column="DRB.UEThpDl",
    ul_column="DRB.UEThpUl",
    value_unit="kbps",
)


def _read(path: Path, mapping: ColumnMapping, **kw: object) -> Trace:
    return Trace.concat(read_mapped_csv(path, mapping, **kw))  # type: ignore[arg-type]


def test_kpm_export_with_ue_rows_and_snssai_slices(tmp_path: Path) -> None:
    path = tmp_path / "kpm.csv"
    path.write_text(KPM)
    policy = load_policy(ROOT / "policies" / "hospital.yaml")
    trace = _read(path, KPM_MAPPING, interval_s=1.0, policy=policy)
    assert trace.slices == policy.slice_names
    assert trace.start == MONDAY
    consults, haptics = trace.slice_index("consults"), trace.slice_index("surgery-haptics")
    # interval 0: two report times; consults DL (1000+3000+2000)/2 kbps, UL (200+400+200)/2
    np.testing.assert_allclose(trace.load_bps[0, consults], [3e6, 0.4e6])
    np.testing.assert_allclose(trace.load_bps[0, haptics], [0.25e6, 0.0])  # empty UL -> no report
    np.testing.assert_allclose(trace.load_bps[1, consults], [1e6, 0.1e6])
    assert trace.load_bps[1, haptics, 0] == 0.0  # slice absent while others report: zero
    assert np.isnan(trace.load_bps[2]).all()  # no report at all: missing
    assert trace.n_intervals == 4


def test_epoch_ms_value_and_direction_columns_in_bytes(tmp_path: Path) -> None:
    path = tmp_path / "vol.csv"
    path.write_text(
        "t_ms;cell;ue;dir;bytes\n"
        f"{MONDAY * 1000:.0f};A;u1;DL;1000\n"
        f"{MONDAY * 1000 + 500:.0f};A;u2;DL;3000\n"
        f"{MONDAY * 1000 + 900:.0f};A;u2;UL;500\n"
        f"{MONDAY * 1000 + 10000:.0f};B;u1;downlink;250\n"
    )
    mapping = ColumnMapping(
        time_column="t_ms",
        time_unit="ms",
        slice_column="cell",
        slice_names={"A": "video", "B": "embb"},
        ue_column="ue",
        value_column="bytes",
        direction_column="dir",
        value_unit="bytes",
        delimiter=";",
    )
    trace = _read(path, mapping, interval_s=10.0)
    assert trace.slices == ("video", "embb")
    np.testing.assert_allclose(trace.load_bps[0], [[4000 * 8 / 10, 500 * 8 / 10], [0, 0]])
    np.testing.assert_allclose(trace.load_bps[1], [[0, 0], [250 * 8 / 10, 0]])


def test_constant_direction_yaml_mapping_and_directory_tree(tmp_path: Path) -> None:
    mapping_file = tmp_path / "map.yaml"
    mapping_file.write_text(
        "time_column: ts\nslice_column: s\nvalue_column: mbit\nvalue_unit: Mbps\ndirection: ul\n"
    )
    mapping = load_mapping(mapping_file)
    tree = tmp_path / "exports"
    (tree / "day1").mkdir(parents=True)
    (tree / "day2").mkdir()
    (tree / "day1" / "a.csv").write_text("ts,s,mbit\n0,x,1.5\n1,x,2.5\n")
    (tree / "day2" / "b.csv").write_text("ts,s,mbit\n2,x,4\n3,y,1\n")
    (tree / "day2" / "notes.txt").write_text("ignored")
    # slices are found in every file, not only the first: y appears in the second
    assert _read(tree, mapping, interval_s=1.0).slices == ("x", "y")
    with pytest.raises(TraceReadError, match="unknown slice 'y': map it to one of x") as info:
        _read(tree, mapping, interval_s=1.0, slices=["x"])
    assert info.value.path.endswith("b.csv")
    trace = _read(tree, mapping, interval_s=2.0, slices=["x", "y"])
    # rates average over the report times of an interval; a slice silent at one counts 0 there
    np.testing.assert_allclose(trace.load_bps[:, 0, 1], [2e6, 2e6])
    np.testing.assert_allclose(trace.load_bps[:, 1, 1], [0, 0.5e6])
    assert np.isnan(trace.load_bps[:, :, 0]).all()  # no DL source at all


def test_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(KPM.replace("2026-01-05T00:00:01.100Z", "yesterday"))
    with pytest.raises(TraceReadError, match="time 'yesterday' is not ISO 8601") as info:
        _read(path, KPM_MAPPING, interval_s=1.0)
    assert info.value.position == "line 6"
    assert info.value.path == str(path)
    path.write_text(KPM.replace(",3000,", ",-3,"))
    with pytest.raises(TraceReadError, match="negative") as info:
        _read(path, KPM_MAPPING, interval_s=1.0)
    assert info.value.position == "line 3"
    path.write_text(KPM)
    named = KPM_MAPPING.model_copy(update={"slice_names": {"1-0000B1": "consults"}})
    with pytest.raises(TraceReadError, match="unknown slice '2-0000A1'") as info:
        _read(path, named, interval_s=1.0, slices=["consults"])
    assert info.value.position == "line 5"
    with pytest.raises(TraceReadError, match="no column 'timestamp '"):
        _read(path, KPM_MAPPING.model_copy(update={"time_column": "timestamp "}), interval_s=1.0)
    late = tmp_path / "late"
    late.mkdir()
    (late / "1.csv").write_text("ts,s,v\n" + "".join(f"{t},x,1\n" for t in range(50)))
    (late / "2.csv").write_text("ts,s,v\n3,x,1\n")
    flat = ColumnMapping(time_column="ts", slice_column="s", value_column="v", direction="dl")
    with pytest.raises(TraceReadError, match="out of time order") as info:
        list(read_mapped_csv(late, flat, interval_s=1.0, chunk_intervals=8))
    assert info.value.path.endswith("2.csv")
    assert info.value.position == "line 2"


def test_mapping_validation(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="either value_column or dl_column"):
        ColumnMapping(time_column="t", slice_column="s")
    with pytest.raises(ValidationError, match="direction_column or direction"):
        ColumnMapping(time_column="t", slice_column="s", value_column="v")
    bad = tmp_path / "m.yaml"
    bad.write_text("time_column: t\nslice_column: s\ndl_column: d\nsubscriber: x\n")
    with pytest.raises(TraceError, match=r"m\.yaml: subscriber: Extra inputs"):
        load_mapping(bad)


def test_per_cell_files_merge_side_by_side(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sliceai.traffic.mapped as mapped

    monkeypatch.setattr(mapped, "MERGE_BLOCK_BYTES", 64)  # many small blocks per file
    cells = tmp_path / "cells"
    cells.mkdir()
    rng = np.random.default_rng(3)
    expected = np.zeros((60, 2))
    for cell in range(3):
        lines = ["ts,slice,dl,ul"]
        for t in range(60):
            if rng.random() < 0.8:  # a cell may skip a report
                dl, ul = rng.integers(0, 1000, 2)
                lines.append(f"{t + 0.5 * cell / 3:.6f},embb,{dl},{ul}")
                expected[t] += [dl, ul]
        (cells / f"cell{cell}.csv").write_text("\n".join(lines) + "\n")
    mapping = ColumnMapping(
        time_column="ts", slice_column="slice", dl_column="dl", ul_column="ul", value_unit="bytes"
    )
    with pytest.raises(TraceReadError, match="out of time order"):
        _read(cells, mapping, interval_s=1.0, chunk_intervals=4)
    merged = mapping.model_copy(update={"merge": True})
    chunks = list(read_mapped_csv(cells, merged, interval_s=1.0, chunk_intervals=4))
    assert len(chunks) == 15
    trace = Trace.concat(chunks)
    np.testing.assert_allclose(trace.load_bps[:, 0], expected * 8)


def test_both_directions_of_a_long_block_survive_small_chunks(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text("ts,slice,dl,ul\n" + "".join(f"{t},x,{t},{2 * t}\n" for t in range(100)))
    mapping = ColumnMapping(time_column="ts", slice_column="slice", dl_column="dl", ul_column="ul")
    chunks = list(read_mapped_csv(path, mapping, interval_s=1.0, chunk_intervals=3))
    trace = Trace.concat(chunks)
    np.testing.assert_array_equal(trace.load_bps[:, 0, 0], np.arange(100))
    np.testing.assert_array_equal(trace.load_bps[:, 0, 1], 2 * np.arange(100))
