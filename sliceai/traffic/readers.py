"""One entry point for every trace format: :func:`open_trace` (streaming) and :func:`load_trace`.

Formats: ``"long"`` (long CSV, :mod:`sliceai.traffic.longcsv`), ``"mapped"``
(column-mapped CSV file or directory, :mod:`sliceai.traffic.mapped`),
``"pcap"`` (pcap or pcapng, :mod:`sliceai.traffic.pcap`), ``"parquet"`` (the long
CSV's columns in Parquet, :mod:`sliceai.traffic.parquet`; needs ``sliceai[scale]``,
loaded only for such files). ``"auto"`` picks pcap for ``.pcap``/``.pcapng``/``.cap``
files, Parquet for ``.parquet``/``.pq``, mapped when a mapping is given or the path is a
directory, long CSV otherwise. :func:`write_trace` writes Parquet or long CSV by suffix.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from sliceai.plugins import load
from sliceai.policy.model import Policy
from sliceai.traffic.binning import DEFAULT_CHUNK_INTERVALS
from sliceai.traffic.detect import infer_interval
from sliceai.traffic.longcsv import read_long_csv, write_long_csv
from sliceai.traffic.mapped import ColumnMapping, mapped_files, read_mapped_csv
from sliceai.traffic.pcap import PcapStats, read_pcap
from sliceai.traffic.trace import Trace, TraceError

TraceFormat = Literal["auto", "long", "mapped", "pcap", "parquet"]
PCAP_SUFFIXES = (".pcap", ".pcapng", ".cap")
PARQUET_SUFFIXES = (".parquet", ".pq")


def detect_format(path: Path, mapping: ColumnMapping | None = None) -> TraceFormat:
    """The format ``"auto"`` resolves to for ``path``."""
    if path.suffix.lower() in PCAP_SUFFIXES:
        return "pcap"
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return "parquet"
    if mapping is not None or path.is_dir():
        return "mapped"
    return "long"


def open_trace(
    path: str | Path,
    *,
    format: TraceFormat = "auto",
    policy: Policy | None = None,
    slices: Iterable[str] | None = None,
    interval_s: float | None = None,
    mapping: ColumnMapping | None = None,
    ue_prefixes: Iterable[str] = (),
    include_unmatched: bool = False,
    pcap_stats: PcapStats | None = None,
    chunk_intervals: int = DEFAULT_CHUNK_INTERVALS,
) -> Iterator[Trace]:
    """Stream any trace as chunks of consecutive intervals.

    ``policy`` is needed for pcap (its match rules classify packets) and gives
    the slice order otherwise unless ``slices`` does. ``interval_s`` is
    inferred for long CSV and mapped CSV (:func:`sliceai.traffic.detect.infer_interval`),
    1 s by default for pcap.
    Raises :class:`~sliceai.traffic.trace.TraceError` (a
    :class:`~sliceai.traffic.trace.TraceReadError` with file and position for
    bad input).
    """
    source = Path(path)
    kind = detect_format(source, mapping) if format == "auto" else format
    names = tuple(slices) if slices is not None else (policy.slice_names if policy else None)
    if kind == "pcap":
        if policy is None:
            raise TraceError(f"{source}: reading a packet capture needs a policy (its match rules)")
        return read_pcap(
            source,
            policy,
            interval_s=interval_s or 1.0,
            ue_prefixes=ue_prefixes,
            include_unmatched=include_unmatched,
            chunk_intervals=chunk_intervals,
            stats=pcap_stats,
        )
    if kind == "mapped":
        if mapping is None:
            raise TraceError(f"{source}: a mapped CSV needs a column mapping")
        if interval_s is None:
            inferred = infer_interval(mapped_files(source, mapping), mapping)
            interval_s = inferred.interval_s
            if mapping.report_period_s is None:
                mapping = mapping.model_copy(update={"report_period_s": inferred.period_s})
        return read_mapped_csv(
            source,
            mapping,
            interval_s=interval_s,
            policy=policy,
            slices=names,
            chunk_intervals=chunk_intervals,
        )
    if kind == "parquet":
        read_parquet = load("sliceai.traffic.parquet:read_parquet_trace")
        chunks: Iterator[Trace] = read_parquet(
            source, slices=names, interval_s=interval_s, chunk_intervals=chunk_intervals
        )
        return chunks
    return read_long_csv(
        source, slices=names, interval_s=interval_s, chunk_intervals=chunk_intervals
    )


def load_trace(path: str | Path, **options: object) -> Trace:
    """A whole trace in memory (for small files): :func:`open_trace` chunks joined."""
    return Trace.concat(open_trace(path, **options))  # type: ignore[arg-type]


def write_trace(trace: Trace | Iterable[Trace], path: str | Path) -> int:
    """Write a trace (or its chunks, streamed) as Parquet (``.parquet``/``.pq``, needs
    ``sliceai[scale]``) or else long CSV; atomic either way. Returns the intervals written."""
    if Path(path).suffix.lower() in PARQUET_SUFFIXES:
        written: int = load("sliceai.traffic.parquet:write_parquet_trace")(trace, path)
        return written
    return write_long_csv(trace, path)
