"""What a mapped CSV export holds, found before converting it: the interval its
reports come at and, for ``trace convert --dry-run``, a description of everything
detected (files, columns, time unit, interval, slices, directions, rows).

The interval is the median spacing of the distinct report times of the first file
that has two (per-UE files each hold one UE's reports), snapped to a common interval
(250 ms, 1 s, 15 min...) within 5 %, else rounded to the millisecond, and at least
the shortest a trace allows (:data:`~sliceai.traffic.trace.MIN_INTERVAL_S`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sliceai.policy.model import Policy
from sliceai.policy.units import format_duration_ms
from sliceai.traffic.csvblocks import CsvBlockReader
from sliceai.traffic.mapped import (
    ColumnMapping,
    mapped_files,
    report_times,
    resolve_time_unit,
    scan_slices,
    slice_aliases,
)
from sliceai.traffic.trace import MAX_INTERVAL_S, MIN_INTERVAL_S, TraceError

COMMON_INTERVALS_S = (0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900)
COMMON_PERIODS_S = (0.01, 0.02, 0.05, 0.1, 0.2, *COMMON_INTERVALS_S)
SNAP_RTOL = 0.05
TIME_UNIT_WORDS = {"s": "epoch seconds", "ms": "epoch milliseconds", "iso": "ISO 8601"}


@dataclass(frozen=True)
class InferredInterval:
    """The interval chosen, the median spacing it came from and the file measured."""

    interval_s: float
    median_s: float
    file: Path

    @property
    def period_s(self) -> float:
        """The report grid: a common period within 5 % of the median, else the median to
        the millisecond (at least 1 ms)."""
        for common in COMMON_PERIODS_S:
            if abs(self.median_s - common) <= SNAP_RTOL * common:
                return float(common)
        return max(0.001, round(self.median_s, 3))

    def sentence(self) -> str:
        got = format_duration_ms(self.median_s * 1000)
        if self.interval_s > self.median_s * (1 + SNAP_RTOL):
            return (
                f"reports every {got} (median spacing in {self.file.name}); binned into "
                f"{format_duration_ms(self.interval_s * 1000)} intervals, the shortest a "
                "trace allows (--interval to choose another)"
            )
        return (
            f"interval {format_duration_ms(self.interval_s * 1000)}: the median spacing of "
            f"report times in {self.file.name} is {got} (--interval to override)"
        )


def snap_interval(median_s: float) -> float:
    """A common interval within 5 % of ``median_s``, else ``median_s`` to the millisecond;
    at least :data:`MIN_INTERVAL_S`."""
    for common in COMMON_INTERVALS_S:
        if abs(median_s - common) <= SNAP_RTOL * common:
            return float(common)
    return max(MIN_INTERVAL_S, round(median_s, 3))


def infer_interval(files: list[Path], mapping: ColumnMapping) -> InferredInterval:
    """The interval of a mapped export (see the module doc); :class:`TraceError` when no
    file has two distinct report times or the spacing is over :data:`MAX_INTERVAL_S`."""
    mapping = resolve_time_unit(files, mapping)
    for file in files:
        reader = CsvBlockReader(file, delimiter=mapping.delimiter)
        for block in reader:
            times = np.unique(report_times(reader, block, mapping))
            if len(times) >= 2:
                median = float(np.median(np.diff(times)))
                if median > MAX_INTERVAL_S:
                    raise TraceError(
                        f"{file}: reports come every {median:g} s, more than the longest "
                        f"interval ({MAX_INTERVAL_S:g} s)"
                    )
                return InferredInterval(snap_interval(median), median, file)
            break  # one block is enough to see the spacing; else try the next file
    raise TraceError(
        "cannot infer the interval: no file has two distinct report times; give --interval"
    )


def describe(
    path: Path,
    mapping: ColumnMapping,
    *,
    policy: Policy | None = None,
    interval_s: float | None = None,
    slices: tuple[str, ...] | None = None,
    preset: str | None = None,
) -> str:
    """What converting ``path`` with ``mapping`` would read, as lines of text (the dry run)."""
    files = mapped_files(path, mapping)
    mapping = resolve_time_unit(files, mapping)
    header = _header(files[0], mapping)
    aliases = slice_aliases(mapping, policy)
    scan = scan_slices(files, mapping, aliases, include_mapped=preset is None)
    if slices is None:
        slices = policy.slice_names if policy is not None else scan.names
    lines = [f"files: {len(files)} ({_listing(files, path)})"]
    lines.append(f"columns: {', '.join(header)}")
    if preset is not None:
        lines.append(f"preset: {preset}")
    used = {
        "time": mapping.time_column,
        "slice": mapping.slice_column,
        "UE (summed over, never kept)": mapping.ue_column,
        "DL": mapping.dl_column,
        "UL": mapping.ul_column,
        "value": mapping.value_column,
        "direction": mapping.direction_column,
    }
    lines.append(
        "mapping: " + "; ".join(f"{role} {col!r}" for role, col in used.items() if col is not None)
    )
    lines.append(f"time unit: {mapping.time_unit} ({TIME_UNIT_WORDS[mapping.time_unit]})")
    if interval_s is None:
        lines.append(infer_interval(files, mapping).sentence())
    else:
        lines.append(f"interval: {format_duration_ms(interval_s * 1000)} (given)")
    if mapping.report_period_s is not None:
        grid = format_duration_ms(mapping.report_period_s * 1000)
        lines.append(f"report times: rounded to the {grid} grid the reports come on")
    values = ", ".join(
        f"{v!r} -> {aliases.get(v, v)} ({n} rows)" for v, n in sorted(scan.rows.items())
    )
    lines.append(f"slices: {', '.join(slices)}; values found: {values or 'none'}")
    unknown = sorted(v for v in scan.rows if aliases.get(v, v) not in slices)
    if unknown:
        lines.append(
            f"  not a slice of the trace: {', '.join(map(repr, unknown))} "
            "(map them with --slice-name VALUE=NAME or slice_names)"
        )
    lines.append(f"directions: {_directions(mapping)}")
    unit = "bytes per report" if mapping.value_unit == "bytes" else mapping.value_unit
    lines.append(f"values: {unit}")
    ues = f", {len(scan.ues)} UEs" if mapping.ue_column is not None else ""
    lines.append(f"rows: {scan.n_rows}{ues}")
    lines.append("dry run: nothing written")
    return "\n".join(lines)


def _header(file: Path, mapping: ColumnMapping) -> list[str]:
    reader = CsvBlockReader(file, delimiter=mapping.delimiter, block_bytes=64 << 10)
    for _ in reader:
        break
    return reader.header


def read_header(path: Path, pattern: str = "*.csv", delimiter: str = ",") -> tuple[Path, list[str]]:
    """The first file of ``path`` (a file or a directory's first ``pattern`` match) and its
    header; :class:`TraceError` when there is none."""
    probe = ColumnMapping(time_column="-", slice_column="-", dl_column="-", pattern=pattern)
    first = mapped_files(path, probe)[0]
    reader = CsvBlockReader(first, delimiter=delimiter, block_bytes=64 << 10)
    for _ in reader:
        break
    if not reader.header:
        raise TraceError(f"{first}: empty file: no header line")
    return first, reader.header


def _listing(files: list[Path], root: Path) -> str:
    names = [str(f.relative_to(root)) if root.is_dir() else f.name for f in files[:3]]
    more = f", ... {len(files) - 3} more" if len(files) > 3 else ""
    return ", ".join(names) + more


def _directions(m: ColumnMapping) -> str:
    if m.value_column is not None:
        if m.direction is not None:
            return f"{m.direction} only (constant)"
        return f"from column {m.direction_column!r}"
    both = [d for d, col in (("dl", m.dl_column), ("ul", m.ul_column)) if col is not None]
    if len(both) == 2:
        return "dl and ul"
    other = "ul" if both == ["dl"] else "dl"
    return f"{both[0]} only ({other} not in the export: left missing)"
