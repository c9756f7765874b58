"""Parquet traces: the long CSV's columns in a Parquet file (needs ``sliceai[scale]``: pyarrow).

Columns ``timestamp`` (float64, epoch s), ``slice`` (string), ``direction``
(``dl``/``ul``), ``bps`` (float64, null = missing) and any extra measurement
(float64), one row per interval, slice and direction, as in
:mod:`sliceai.traffic.longcsv`; the rows go through the same
:class:`~sliceai.traffic.binning.IntervalBinner`, so both formats mean the same.
:func:`write_parquet_trace` also stores the trace's start, interval and slice
order in the file's metadata (``sliceai.*`` keys), which :func:`read_parquet_trace`
uses; Parquet files written by other tools (no such keys) get the interval and
slices inferred from the first row group, as for long CSV.

This module imports pyarrow at its top: :func:`sliceai.traffic.readers.open_trace`
loads it through :func:`sliceai.plugins.load` only for ``.parquet`` files, so the
base install reads every other format without pyarrow.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sliceai.traffic.binning import DEFAULT_CHUNK_INTERVALS, IntervalBinner, RowProblem
from sliceai.traffic.longcsv import DIRECTION_CODES, REQUIRED_COLUMNS
from sliceai.traffic.trace import DIRECTION_NAMES, Trace, TraceError, TraceReadError

META_START = b"sliceai.start"
META_INTERVAL = b"sliceai.interval_s"
META_SLICES = b"sliceai.slices"
BATCH_ROWS = 1 << 16


def read_parquet_trace(
    path: str | Path,
    *,
    slices: Iterable[str] | None = None,
    interval_s: float | None = None,
    chunk_intervals: int = DEFAULT_CHUNK_INTERVALS,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[Trace]:
    """Stream a Parquet trace as chunks of at most ``chunk_intervals`` intervals.

    ``slices`` fixes the slice order (else the file's metadata, else the first batch's
    slices in order of appearance); ``interval_s`` likewise (else the metadata, else the
    smallest step between the first batch's timestamps). Raises :class:`TraceReadError`
    naming the file and row of the first problem.
    """
    source = Path(path)
    try:
        parquet = pq.ParquetFile(source)
    except (OSError, pa.ArrowException) as exc:
        raise TraceReadError(source, None, f"cannot read as Parquet: {exc}") from None
    schema = parquet.schema_arrow
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        raise TraceReadError(
            source, None, f"no column {', '.join(missing)} (needs {REQUIRED_COLUMNS})"
        )
    extra_names = tuple(n for n in schema.names if n not in REQUIRED_COLUMNS)
    meta = schema.metadata or {}
    batches = parquet.iter_batches(batch_size=batch_rows, columns=[*REQUIRED_COLUMNS, *extra_names])
    try:
        first = next(batches, None)
    except pa.ArrowException as exc:
        raise TraceReadError(source, None, f"cannot read as Parquet: {exc}") from None
    if first is None or first.num_rows == 0:
        return
    times = _floats(first, "timestamp", source, 0)
    start = float(meta[META_START]) if META_START in meta else float(np.nanmin(times))
    if interval_s is None:
        interval_s = float(meta[META_INTERVAL]) if META_INTERVAL in meta else _infer(times, source)
    if slices is not None:
        names = tuple(slices)
    elif META_SLICES in meta:
        names = tuple(json.loads(meta[META_SLICES]))
    else:
        names = tuple(dict.fromkeys(first.column("slice").to_pylist()))
    binner = IntervalBinner(
        start, interval_s, names, "unique", chunk_intervals=chunk_intervals, extras=extra_names
    )
    row = 0
    try:
        batch: pa.RecordBatch | None = first
        while batch is not None:
            yield from _feed(binner, batch, source, row, names, extra_names)
            row += batch.num_rows
            batch = next(batches, None)
        yield from binner.finish()
    except RowProblem as exc:
        raise TraceReadError(source, f"row {exc.row_tag}", exc.message) from None
    except pa.ArrowException as exc:
        raise TraceReadError(source, f"near row {row}", str(exc)) from None
    except TraceError as exc:
        if isinstance(exc, TraceReadError):
            raise
        raise TraceReadError(source, None, str(exc)) from None


def _floats(batch: pa.RecordBatch, name: str, source: Path, row: int) -> npt.NDArray[np.float64]:
    column = batch.column(name)
    try:
        column = pc.cast(column, pa.float64())
    except pa.ArrowException:
        raise TraceReadError(source, f"row {row}", f"column {name} is not numeric") from None
    out: npt.NDArray[np.float64] = column.to_numpy(zero_copy_only=False).astype(np.float64)
    return out


def _infer(times: npt.NDArray[np.float64], source: Path) -> float:
    distinct = np.unique(times[np.isfinite(times)])
    if len(distinct) < 2:
        raise TraceReadError(
            source, None, "cannot infer the interval from one timestamp; give the interval"
        )
    return round(float(np.diff(distinct).min()), 6)


def _codes(
    batch: pa.RecordBatch, name: str, values: tuple[str, ...], source: Path, row: int, hint: str
) -> npt.NDArray[np.int64]:
    column = pc.cast(batch.column(name), pa.string())
    index = pc.index_in(column, value_set=pa.array(values, pa.string()))
    if index.null_count:
        k = int(np.argmax(index.is_null().to_numpy(zero_copy_only=False)))
        raise TraceReadError(
            source, f"row {row + k}", f"unknown {name} {column[k].as_py()!r}{hint}"
        )
    out: npt.NDArray[np.int64] = index.to_numpy(zero_copy_only=False).astype(np.int64)
    return out


def _feed(
    binner: IntervalBinner,
    batch: pa.RecordBatch,
    source: Path,
    row: int,
    names: tuple[str, ...],
    extra_names: tuple[str, ...],
) -> Iterator[Trace]:
    times = _floats(batch, "timestamp", source, row)
    hint = f"; the trace's slices are {', '.join(names)} (pass the slice list to read more)"
    slice_idx = _codes(batch, "slice", names, source, row, hint)
    spelled = tuple(DIRECTION_CODES)
    direction = np.array([DIRECTION_CODES[s] for s in spelled], dtype=np.int64)[
        _codes(batch, "direction", spelled, source, row, " (use dl or ul)")
    ]
    bps = _floats(batch, "bps", source, row)
    bad = ~(np.isnan(bps) | ((bps >= 0) & np.isfinite(bps)))
    if bad.any():
        k = int(np.argmax(bad))
        raise TraceReadError(
            source, f"row {row + k}", f"bps {float(bps[k])!r} is negative or infinite"
        )
    rel = (times - binner.start) / binner.interval_s
    off_grid = ~np.isfinite(times) | (np.abs(rel - np.round(rel)) > 1e-3)
    if off_grid.any():
        k = int(np.argmax(off_grid))
        raise TraceReadError(
            source,
            f"row {row + k}",
            f"timestamp {float(times[k])!r} is not on the {binner.interval_s:g} s interval grid "
            f"that starts at {binner.start!r}",
        )
    extras = None
    if extra_names:
        extras = np.stack([_floats(batch, n, source, row) for n in extra_names])
    tags = np.arange(row, row + batch.num_rows, dtype=np.int64)
    index = np.round(rel).astype(np.int64)
    yield from binner.add(index, slice_idx, direction, bps, tags, extras=extras)


def _table(chunk: Trace, schema: pa.Schema) -> pa.Table:
    n, s = chunk.n_intervals, len(chunk.slices)
    columns: dict[str, Any] = {
        "timestamp": np.repeat(chunk.timestamps(), 2 * s),
        "slice": pa.DictionaryArray.from_arrays(
            np.tile(np.repeat(np.arange(s, dtype=np.int32), 2), n), pa.array(chunk.slices)
        ),
        "direction": pa.DictionaryArray.from_arrays(
            np.tile(np.arange(2, dtype=np.int32), n * s), pa.array(DIRECTION_NAMES)
        ),
        "bps": pa.array(chunk.load_bps.reshape(-1), pa.float64(), from_pandas=True),
    }
    for name in chunk.extras:
        columns[name] = pa.array(chunk.extras[name].reshape(-1), pa.float64(), from_pandas=True)
    return pa.Table.from_pydict(columns, schema=schema)


def write_parquet_trace(trace: Trace | Iterable[Trace], path: str | Path) -> int:
    """Write a trace (or its chunks, streamed: one row group each) as Parquet; the intervals.

    Missing values (NaN) are written as nulls. The file appears only when complete
    (written next to ``path`` and renamed).
    """
    chunks: Iterable[Trace] = [trace] if isinstance(trace, Trace) else trace
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    written = 0
    writer: pq.ParquetWriter | None = None
    try:
        first: Trace | None = None
        schema: pa.Schema | None = None
        for chunk in chunks:
            if first is None:
                first = chunk
                schema = _schema(chunk)
                writer = pq.ParquetWriter(tmp, schema, compression="zstd")
            else:
                _check_continues(first, chunk, written)
            assert writer is not None
            assert schema is not None
            writer.write_table(_table(chunk, schema))
            written += chunk.n_intervals
        if writer is None:
            raise TraceError("nothing to write: no trace chunks")
        writer.close()
        writer = None
        os.replace(tmp, target)
    except BaseException:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return written


def _schema(chunk: Trace) -> pa.Schema:
    fields = [
        pa.field("timestamp", pa.float64()),
        pa.field("slice", pa.dictionary(pa.int32(), pa.string())),
        pa.field("direction", pa.dictionary(pa.int32(), pa.string())),
        pa.field("bps", pa.float64()),
        *(pa.field(name, pa.float64()) for name in chunk.extras),
    ]
    meta = {
        META_START: repr(chunk.start).encode(),
        META_INTERVAL: repr(chunk.interval_s).encode(),
        META_SLICES: json.dumps(list(chunk.slices)).encode(),
    }
    return pa.schema(fields, metadata=meta)


def _check_continues(first: Trace, chunk: Trace, written: int) -> None:
    expected = first.start + written * first.interval_s
    if chunk.slices != first.slices or chunk.interval_s != first.interval_s:
        raise TraceError("chunks to write have different slices or intervals")
    if tuple(chunk.extras) != tuple(first.extras):
        raise TraceError("chunks to write have different extras")
    if abs(chunk.start - expected) > 1e-6 * first.interval_s + 1e-9 * abs(expected):
        raise TraceError(f"chunk starts at {chunk.start:.6f}, expected {expected:.6f} (a gap)")
