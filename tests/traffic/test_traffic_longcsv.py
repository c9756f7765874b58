"""Long CSV: round trips, streaming in chunks, and errors that name the line."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sliceai.traffic import Trace, TraceError, TraceReadError
from sliceai.traffic.longcsv import read_long_csv, write_long_csv

START = 1767571200.0


def _trace(n: int = 50, slices: tuple[str, ...] = ("a", "b", "c"), seed: int = 0) -> Trace:
    rng = np.random.default_rng(seed)
    load = np.round(rng.gamma(2.0, 1e6, (n, len(slices), 2)), 3)
    load[3, 1, 0] = np.nan
    delay = np.round(rng.random((n, len(slices), 2)), 6)
    return Trace(START, 0.25, slices, load, {"delay_ms": delay})


def _same(a: Trace, b: Trace) -> None:
    assert a.slices == b.slices
    assert a.start == pytest.approx(b.start)
    assert a.interval_s == pytest.approx(b.interval_s)
    np.testing.assert_array_equal(a.load_bps, b.load_bps)
    assert set(a.extras) == set(b.extras)
    for name in a.extras:
        np.testing.assert_array_equal(a.extras[name], b.extras[name])


def test_round_trip_keeps_values_missing_and_extras(tmp_path: Path) -> None:
    trace = _trace()
    path = tmp_path / "t.csv"
    assert write_long_csv(trace, path) == 50
    back = Trace.concat(read_long_csv(path))
    _same(trace, back)
    assert np.isnan(back.load_bps[3, 1, 0])


def test_streams_in_chunks_with_small_blocks(tmp_path: Path) -> None:
    trace = _trace(n=300)
    path = tmp_path / "t.csv"
    write_long_csv(trace.chunks(64), path)
    chunks = list(read_long_csv(path, chunk_intervals=40, block_bytes=2048))
    assert [c.n_intervals for c in chunks] == [40] * 7 + [20]
    for earlier, later in itertools.pairwise(chunks):
        assert later.start == pytest.approx(earlier.start + earlier.duration_s)
    _same(trace, Trace.concat(chunks))


def test_slice_order_and_unknown_slice(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    write_long_csv(_trace(), path)
    back = Trace.concat(read_long_csv(path, slices=["c", "b", "a", "d"]))
    assert back.slices == ("c", "b", "a", "d")
    assert np.isnan(back.load_bps[:, 3]).all()
    np.testing.assert_array_equal(back.load_bps[:, 0], _trace().load_bps[:, 2])
    with pytest.raises(TraceReadError, match=r"line 2: unknown slice 'a'"):
        list(read_long_csv(path, slices=["b"]))


def test_missing_intervals_are_nan_and_interval_given(tmp_path: Path) -> None:
    path = tmp_path / "gap.csv"
    path.write_text("timestamp,slice,direction,bps\n100.0,x,dl,5\n100.0,x,ul,6\n103.0,x,dl,7\n")
    trace = Trace.concat(read_long_csv(path, interval_s=1.0))
    assert trace.n_intervals == 4
    np.testing.assert_array_equal(trace.load_bps[:, 0, 0], [5, np.nan, np.nan, 7])
    assert np.isnan(trace.load_bps[3, 0, 1])
    inferred = Trace.concat(read_long_csv(path))
    assert inferred.interval_s == 3.0


def _expect_error(tmp_path: Path, text: str | bytes, position: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    with pytest.raises(TraceReadError, match=message) as info:
        list(read_long_csv(path, interval_s=1.0))
    assert info.value.position == position
    assert str(path) in str(info.value)


HEADER = "timestamp,slice,direction,bps\n"


@pytest.mark.parametrize(
    ("body", "position", "message"),
    [
        ("1,a,dl,5\n1,a,ul\n", "line 3", "expected 4 fields"),
        ("1,a,dl,5\n1,a,ul,five\n", "line 3", "bps 'five' is not a number"),
        ("1,a,dl,5\nx,a,ul,5\n", "line 3", "timestamp 'x' is not a number"),
        ("1,a,dl,5\n1,a,up,5\n", "line 3", "unknown direction 'up'"),
        ("1,a,dl,5\n2,a,dl,5\n2,a,dl,6\n", "line 4", "duplicate row"),
        ("1,a,dl,5\n1,a,ul,-5\n", "line 3", "negative"),
        ("1,a,dl,5\n1.5,a,ul,5\n", "line 3", "not on the 1 s interval grid"),
        ("1,a,dl,5\n1,a,ul,5\n1,a", "line 4", "expected 4 fields"),  # truncated last line
    ],
)
def test_malformed_rows_name_the_line(
    body: str, position: str, message: str, tmp_path: Path
) -> None:
    _expect_error(tmp_path, HEADER + body, position, message)


def test_out_of_order_row_names_the_line(tmp_path: Path) -> None:
    rows = "".join(f"{t},a,dl,1\n" for t in range(10)) + "2,a,ul,1\n"
    path = tmp_path / "late.csv"
    path.write_text(HEADER + rows)
    with pytest.raises(TraceReadError, match="out of time order") as info:
        list(read_long_csv(path, interval_s=1.0, chunk_intervals=4, block_bytes=16))
    assert info.value.position == "line 12"


def test_not_utf8_and_missing_column_and_empty(tmp_path: Path) -> None:
    _expect_error(tmp_path, HEADER.encode() + b"1,\xff,dl,5\n", "line 2 (byte 32)", "not UTF-8")
    _expect_error(
        tmp_path, "time,slice,direction,bps\n1,a,dl,5\n", "line 1", "no column 'timestamp'"
    )
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(TraceReadError, match="empty file"):
        list(read_long_csv(empty))
    with pytest.raises(TraceReadError, match="cannot read file"):
        list(read_long_csv(tmp_path / "nope.csv"))


def test_quoted_fields_take_the_csv_module_path(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text(HEADER + '1,"a",dl,5\n1,a,"ul",6\n')
    trace = Trace.concat(read_long_csv(path, interval_s=1.0))
    np.testing.assert_array_equal(trace.load_bps[0, 0], [5, 6])


def test_writer_leaves_nothing_when_it_fails(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"

    def chunks() -> object:
        trace = _trace(n=100)
        yield trace.window(0, 50)
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError, match="source failed"):
        write_long_csv(chunks(), path)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
    # a gap between chunks is refused, and the old file stays as it was
    path.write_text("old")
    trace = _trace(n=100)
    with pytest.raises(TraceError, match="gap"):
        write_long_csv([trace.window(0, 10), trace.window(20, 30)], path)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 40),
    n_slices=st.integers(1, 4),
    chunk=st.integers(1, 50),
    interval=st.sampled_from([0.25, 1.0, 60.0, 900.0]),
    seed=st.integers(0, 2**16),
)
def test_round_trip_property(
    tmp_path_factory: pytest.TempPathFactory,
    n: int,
    n_slices: int,
    chunk: int,
    interval: float,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    load = np.round(rng.pareto(1.5, (n, n_slices, 2)) * 1e5, 3)
    load[rng.random(load.shape) < 0.1] = np.nan
    trace = Trace(START + seed, interval, tuple(f"s{i}" for i in range(n_slices)), load)
    path = tmp_path_factory.mktemp("prop") / "t.csv"
    write_long_csv(trace, path)
    back = Trace.concat(read_long_csv(path, interval_s=interval, chunk_intervals=chunk))
    _same(trace, back)


def test_blank_lines_and_crlf_keep_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_bytes(b"\n" + HEADER.encode() + b"1,a,dl,5\r\n\r\n1,a,ul,6\n\n2,a,dl,x\n")
    with pytest.raises(TraceReadError, match="bps 'x'") as info:
        list(read_long_csv(path, interval_s=1.0))
    assert info.value.position == "line 7"
    path.write_bytes(HEADER.encode() + b"1,a,dl,5\r\n\r\n1,a,ul,6\n\n")
    trace = Trace.concat(read_long_csv(path, interval_s=1.0))
    np.testing.assert_array_equal(trace.load_bps[0, 0], [5, 6])


def test_written_file_has_ordinary_permissions(tmp_path: Path) -> None:
    import os

    path = tmp_path / "perm.csv"
    write_long_csv(_trace(n=5), path)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
