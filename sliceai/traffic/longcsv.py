"""Long CSV traces: one row per interval, slice and direction.

The format::

    timestamp,slice,direction,bps[,EXTRA...]
    1764201600.0,surgery-haptics,dl,812345.125
    1764201600.0,surgery-haptics,ul,790112.5

``timestamp`` is the start of the interval in epoch seconds, ``direction`` is
``dl`` or ``ul``, ``bps`` the offered load in bit/s (empty = missing, NaN).
Further columns are extra measurements with the same meaning as
``Trace.extras`` (``delay_ms``, ``loss``, ``prb_used``...). Rows must come in
non-decreasing time order (within a chunk any order is accepted); each
(timestamp, slice, direction) appears at most once. Intervals without rows
are missing (NaN).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sliceai.traffic.binning import DEFAULT_CHUNK_INTERVALS, IntervalBinner, RowProblem
from sliceai.traffic.csvblocks import DEFAULT_BLOCK_BYTES, CsvBlock, CsvBlockReader
from sliceai.traffic.trace import DIRECTION_NAMES, Trace, TraceError, TraceReadError

REQUIRED_COLUMNS = ("timestamp", "slice", "direction", "bps")
DIRECTION_CODES: dict[str, int] = {
    "dl": 0,
    "ul": 1,
    "DL": 0,
    "UL": 1,
    "downlink": 0,
    "uplink": 1,
    "Downlink": 0,
    "Uplink": 1,
}


def read_long_csv(
    path: str | Path,
    *,
    slices: Iterable[str] | None = None,
    interval_s: float | None = None,
    chunk_intervals: int = DEFAULT_CHUNK_INTERVALS,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> Iterator[Trace]:
    """Stream a long CSV trace as chunks of at most ``chunk_intervals`` intervals.

    ``slices`` fixes the trace's slice order (e.g. ``policy.slice_names``); left
    out, the slices are those named in the first block of the file (about
    ``block_bytes`` of text) in order of appearance. ``interval_s`` left out is
    the smallest step between the distinct timestamps of that first block.
    Raises :class:`TraceReadError` naming the file and line of the first problem.
    """
    reader = CsvBlockReader(Path(path), block_bytes=block_bytes)
    blocks = iter(reader)
    head: list[CsvBlock] = []
    for block in blocks:
        head.append(block)
        if interval_s is not None or _distinct_times(reader, head) >= 2:
            break
    if not head:
        if not reader.header:
            raise reader.error(None, "empty file: no header line")
        return
    cols = [reader.column(name) for name in REQUIRED_COLUMNS]
    extra_names = tuple(h for h in reader.header if h not in REQUIRED_COLUMNS)
    extra_cols = [reader.header.index(h) for h in extra_names]
    first_times = reader.floats(head[0], cols[0], "timestamp")
    start = float(first_times.min())
    if interval_s is None:
        interval_s = _infer_interval(reader, head, cols[0])
    if slices is None:
        seen: dict[str, None] = {}
        for block in head:
            seen.update(dict.fromkeys(block.columns[cols[1]]))
        names = tuple(seen)
    else:
        names = tuple(slices)
    slice_ids = {name: i for i, name in enumerate(names)}
    try:
        binner = IntervalBinner(
            start, interval_s, names, "unique", chunk_intervals=chunk_intervals, extras=extra_names
        )
        for block in _chain(head, blocks):
            yield from _feed(reader, binner, block, cols, extra_cols, slice_ids)
        yield from binner.finish()
    except RowProblem as exc:
        raise reader.error(exc.row_tag, exc.message) from None
    except TraceError as exc:
        if isinstance(exc, TraceReadError):
            raise
        raise TraceReadError(reader.path, None, str(exc)) from None


def _chain(head: list[CsvBlock], rest: Iterator[CsvBlock]) -> Iterator[CsvBlock]:
    yield from head
    yield from rest


def _distinct_times(reader: CsvBlockReader, head: list[CsvBlock]) -> int:
    col = reader.column("timestamp")
    distinct: set[str] = set()
    for block in head:
        distinct.update(block.columns[col][:10_000])
        if len(distinct) >= 2:
            break
    return len(distinct)


def _infer_interval(reader: CsvBlockReader, head: list[CsvBlock], col: int) -> float:
    times = np.unique(np.concatenate([reader.floats(b, col, "timestamp") for b in head]))
    if len(times) < 2:
        raise reader.error(None, "cannot infer the interval from one timestamp; give the interval")
    step = float(np.diff(times).min())
    return round(step, 6)


def _lookup(
    reader: CsvBlockReader,
    block: CsvBlock,
    col: int,
    codes: dict[str, int],
    what: str,
    hint: str,
    period: int,
) -> npt.NDArray[np.int64]:
    """Codes of a column ``(n_rows,)``.

    Fast path: the column repeats with ``period`` rows (every interval lists the
    same cells in the same order, as the writer does); then only one period is
    looked up and the check is a C-speed list comparison.
    """
    values = block.columns[col]
    n = len(values)
    if 0 < period < n and values == (values[:period] * (n // period + 1))[:n]:
        try:
            head = np.fromiter(map(codes.__getitem__, values[:period]), np.int64, count=period)
            return np.resize(head, n)
        except KeyError:
            pass  # the slow path below names the line
    try:
        return np.fromiter(map(codes.__getitem__, values), np.int64, count=len(values))
    except KeyError:
        for k, text in enumerate(values):
            if text not in codes:
                raise reader.error(block.line(k), f"unknown {what} {text!r}{hint}") from None
        raise  # pragma: no cover - the loop always finds the bad value


def _feed(
    reader: CsvBlockReader,
    binner: IntervalBinner,
    block: CsvBlock,
    cols: list[int],
    extra_cols: list[int],
    slice_ids: dict[str, int],
) -> Iterator[Trace]:
    period = 2 * len(slice_ids)
    times = reader.floats(block, cols[0], "timestamp")
    hint = f"; the trace's slices are {', '.join(slice_ids)} (pass the slice list to read more)"
    slice_idx = _lookup(reader, block, cols[1], slice_ids, "slice", hint, period)
    direction = _lookup(
        reader, block, cols[2], DIRECTION_CODES, "direction", " (use dl or ul)", period
    )
    bps = reader.floats(block, cols[3], "bps", empty_is_nan=True)
    bad = ~(np.isnan(bps) | ((bps >= 0) & np.isfinite(bps)))
    if bad.any():
        k = int(np.argmax(bad))
        raise reader.error(block.line(k), f"bps {bps[k]!r} is negative or infinite")
    rel = (times - binner.start) / binner.interval_s
    off_grid = np.abs(rel - np.round(rel)) > 1e-3
    if off_grid.any() or not np.isfinite(times).all():
        k = int(np.argmax(off_grid | ~np.isfinite(times)))
        raise reader.error(
            block.line(k),
            f"timestamp {times[k]!r} is not on the {binner.interval_s:g} s interval grid "
            f"that starts at {binner.start!r}",
        )
    extras = None
    if extra_cols:
        extras = np.stack(
            [reader.floats(block, c, reader.header[c], empty_is_nan=True) for c in extra_cols]
        )
    index = np.round(rel).astype(np.int64)
    yield from binner.add(index, slice_idx, direction, bps, block.tags(), extras=extras)


def write_long_csv(
    trace: Trace | Iterable[Trace], path: str | Path, *, decimals: int | None = 3
) -> int:
    """Write a trace (or its chunks, streamed) as long CSV; returns the number of intervals.

    Values are rounded to ``decimals`` decimal places (bit/s; ``None`` keeps full
    precision). The file appears only when complete: it is written to a
    temporary file next to ``path`` and renamed.
    """
    chunks: Iterable[Trace] = [trace] if isinstance(trace, Trace) else trace
    target = Path(path)
    # a new name next to the target (same file system for the rename); created with
    # mode "x" so the usual umask permissions apply, unlike tempfile.mkstemp's 0600
    tmp_name = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    written = 0
    try:
        with tmp_name.open("x", encoding="utf-8", newline="") as out:
            first: Trace | None = None
            for chunk in chunks:
                if first is None:
                    first = chunk
                    out.write(",".join((*REQUIRED_COLUMNS, *chunk.extras)) + "\n")
                else:
                    _check_continues(first, chunk, written)
                out.write(_format_chunk(chunk, decimals))
                written += chunk.n_intervals
            if first is None:
                raise TraceError("nothing to write: no trace chunks")
        os.replace(tmp_name, target)
    except BaseException:
        tmp_name.unlink(missing_ok=True)
        raise
    return written


def _check_continues(first: Trace, chunk: Trace, written: int) -> None:
    expected = first.start + written * first.interval_s
    if chunk.slices != first.slices or chunk.interval_s != first.interval_s:
        raise TraceError("chunks to write have different slices or intervals")
    if set(chunk.extras) != set(first.extras):
        raise TraceError("chunks to write have different extras")
    if abs(chunk.start - expected) > 1e-6 * first.interval_s + 1e-9 * abs(expected):
        raise TraceError(f"chunk starts at {chunk.start:.6f}, expected {expected:.6f} (a gap)")


def _format_values(values: npt.NDArray[np.float64], decimals: int | None) -> list[str]:
    flat = values.reshape(-1)
    if decimals is not None:
        flat = np.round(flat, decimals)
    text = list(map(repr, flat.tolist()))
    for k in np.flatnonzero(np.isnan(flat)).tolist():
        text[k] = ""
    return text


def _format_chunk(chunk: Trace, decimals: int | None) -> str:
    n, n_slices = chunk.n_intervals, len(chunk.slices)
    if n == 0:
        return ""
    per_interval = 2 * n_slices
    stamps = [repr(round(t, 6)) for t in chunk.timestamps().tolist()]
    columns: list[list[str]] = [
        np.repeat(np.array(stamps, dtype=object), per_interval).tolist(),
        [f"{s},{d}" for s in chunk.slices for d in DIRECTION_NAMES] * n,
        _format_values(chunk.load_bps, decimals),
    ]
    columns.extend(
        _format_values(arr, None if decimals is None else max(decimals, 6))
        for arr in chunk.extras.values()
    )
    return "\n".join(map(",".join, zip(*columns, strict=True))) + "\n"
