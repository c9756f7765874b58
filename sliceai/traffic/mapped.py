"""Column-mapped CSV: exports of RAN, xApp and E2SM-KPM tools read through a column mapping.

The user says which column holds what (by flags or a small YAML file)::

    time_column: timestamp        # time of the report
    time_unit: ms                 # auto | s | ms (epoch) | iso (ISO 8601; no offset = UTC)
    slice_column: snssai          # slice name, or a value mapped by slice_names / the policy
    slice_names: {"1-0000B1": consults}
    ue_column: imsi               # optional: rows of all UEs of a slice are summed
    # sd_column: sD                # optional: slice_column holds the SST, this the SD
    # slice_is_snssai: true        # slice values are S-NSSAI labels (1-0000B1, sST=1,sD=...)
    dl_column: DRB.UEThpDl        # either dl_column and/or ul_column ...
    ul_column: DRB.UEThpUl
    # value_column: bytes         # ... or one value column with direction_column or direction
    value_unit: kbps              # bps | kbps | Mbps | Gbps | bytes (volume per report)

``time_unit: auto`` (the default) reads the first time: not a number is ISO 8601,
a number above 1e11 epoch milliseconds, otherwise epoch seconds. The trace's
slices are the policy's when one is given, else the mapping's ``slice_names``
targets and every other value found in the slice column of any file (all files
are scanned first). Names are matched to the policy's case-insensitively.

``report_period_s`` (``trace convert`` sets it to the median spacing of the report
times): report times are rounded to that grid, so the reports of UEs or cells a few
milliseconds apart count as one report round.

Rows are binned into intervals of ``interval_s`` (aligned to multiples of it
in epoch time). Rates of the rows of one slice and report time are summed
(all UEs, cells) and averaged over the report times of the interval; volumes
are summed and divided by the interval. A slice with no row in an interval
that has rows is 0; an interval without rows is missing (NaN). UE
identifiers are personal data: they are dropped as the file is parsed and
never stored or written. A directory is read file by file (``pattern``,
recursively, in path order), which together must be in time order; with
``merge: true`` (files covering the same period, e.g. one per cell) they are
read side by side instead, each in time order, one block of each in memory.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sliceai.policy.model import Policy
from sliceai.policy.snssai import canonical_snssai, parse_snssai_label
from sliceai.traffic.binning import (
    DEFAULT_CHUNK_INTERVALS,
    BinMode,
    IntervalBinner,
    RowProblem,
)
from sliceai.traffic.csvblocks import CsvBlock, CsvBlockReader
from sliceai.traffic.longcsv import DIRECTION_CODES
from sliceai.traffic.trace import Trace, TraceError, TraceReadError

MERGE_BLOCK_BYTES = 256 << 10  # one block per file is held while merging
RATE_SCALE = {"bps": 1.0, "kbps": 1e3, "Mbps": 1e6, "Gbps": 1e9}


class ColumnMapping(BaseModel):
    """Which CSV column holds what; see the module docstring."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    time_column: str
    time_unit: Literal["auto", "s", "ms", "iso"] = "auto"
    slice_column: str
    slice_names: dict[str, str] = {}
    sd_column: str | None = None  # slice_column then holds the SST: the slice is SST-SD
    slice_is_snssai: bool = False  # slice values are S-NSSAI labels, read as "SST" / "SST-SD"
    ue_column: str | None = None
    value_column: str | None = None
    dl_column: str | None = None
    ul_column: str | None = None
    direction_column: str | None = None
    direction: Literal["dl", "ul"] | None = None
    value_unit: Literal["bps", "kbps", "Mbps", "Gbps", "bytes"] = "bps"
    delimiter: str = ","
    pattern: str = "*.csv"
    merge: bool = False  # files cover the same period (one per cell): read side by side
    report_period_s: float | None = Field(default=None, gt=0)  # times rounded to this grid

    @model_validator(mode="after")
    def _one_value_source(self) -> ColumnMapping:
        per_direction = self.dl_column is not None or self.ul_column is not None
        if per_direction == (self.value_column is not None):
            raise ValueError("give either value_column or dl_column/ul_column")
        if self.value_column is not None and (self.direction_column is None) == (
            self.direction is None
        ):
            raise ValueError("with value_column give exactly one of direction_column or direction")
        if len(self.delimiter) != 1:
            raise ValueError("delimiter must be one character")
        return self


def load_mapping(path: str | Path) -> ColumnMapping:
    """A :class:`ColumnMapping` from a YAML file; :class:`TraceError` naming the file if invalid."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        return ColumnMapping.model_validate(data)
    except OSError as exc:
        raise TraceError(f"{path}: cannot read mapping: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise TraceError(f"{path}: mapping is not valid YAML: {exc}") from None
    except ValidationError as exc:
        issues = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'mapping'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise TraceError(f"{path}: {issues}") from None


def slice_aliases(mapping: ColumnMapping, policy: Policy | None) -> dict[str, str]:
    """Slice column value -> slice name: the mapping's ``slice_names`` (targets in lower
    case, as policy names are), and with a policy its S-NSSAIs and its names in any case."""
    aliases = {k: v.lower() for k, v in mapping.slice_names.items()}
    if policy is not None:
        for s in policy.slices:
            aliases.setdefault(str(s.snssai), s.name)
            aliases.setdefault(str(s.snssai).lower(), s.name)
        for name in policy.slice_names:
            aliases.setdefault(name.upper(), name)
    return aliases


def detect_time_unit(text: str) -> Literal["s", "ms", "iso"]:
    """``"iso"`` for a time that is not a number, ``"ms"`` above 1e11 (epoch
    milliseconds: 1e11 s is the year 5138), else ``"s"``."""
    try:
        value = float(text)
    except ValueError:
        return "iso"
    return "ms" if abs(value) > 1e11 else "s"


def resolve_time_unit(files: list[Path], mapping: ColumnMapping) -> ColumnMapping:
    """``mapping`` with ``time_unit: auto`` replaced by the unit of the first time found."""
    if mapping.time_unit != "auto":
        return mapping
    for file in files:
        reader = CsvBlockReader(file, delimiter=mapping.delimiter, block_bytes=64 << 10)
        for block in reader:
            values = block.columns[reader.column(mapping.time_column)]
            if values:
                return mapping.model_copy(update={"time_unit": detect_time_unit(values[0])})
    return mapping.model_copy(update={"time_unit": "s"})


class SliceScan:
    """What :func:`scan_slices` found: slice names in order, rows per raw value, files."""

    def __init__(self) -> None:
        self.names: tuple[str, ...] = ()
        self.rows: dict[str, int] = {}  # raw slice value -> rows
        self.ues: set[int] = set()  # hashes of UE ids (counted, never kept)
        self.n_rows = 0


def scan_slices(
    files: list[Path],
    mapping: ColumnMapping,
    aliases: dict[str, str],
    *,
    include_mapped: bool = True,
) -> SliceScan:
    """Read the slice column of every file: the slices there are, in order: the
    mapping's targets first (``include_mapped``: even those never seen), then the
    other names in order of appearance."""
    scan = SliceScan()
    for file in files:
        reader = CsvBlockReader(file, delimiter=mapping.delimiter)
        for block in reader:
            if mapping.ue_column is not None:
                scan.ues.update(map(hash, block.columns[reader.column(mapping.ue_column)]))
            for value in slice_values(reader, block, mapping):
                scan.rows[value] = scan.rows.get(value, 0) + 1
            scan.n_rows += block.n_rows
    seen = dict.fromkeys(aliases.get(v, v) for v in scan.rows)
    targets = dict.fromkeys(aliases[k] for k in mapping.slice_names if k in aliases)
    first = targets if include_mapped else {t: None for t in targets if t in seen}
    scan.names = tuple({**first, **seen})
    return scan


def mapped_files(path: Path, mapping: ColumnMapping) -> list[Path]:
    """The file itself, or the files under a directory matching ``mapping.pattern``, sorted."""
    if path.is_dir():
        files = sorted(p for p in path.rglob(mapping.pattern) if p.is_file())
        if not files:
            raise TraceReadError(path, None, f"no files matching {mapping.pattern!r}")
        return files
    return [path]


def read_mapped_csv(
    path: str | Path,
    mapping: ColumnMapping,
    *,
    interval_s: float,
    policy: Policy | None = None,
    slices: Iterable[str] | None = None,
    start: float | None = None,
    chunk_intervals: int = DEFAULT_CHUNK_INTERVALS,
) -> Iterator[Trace]:
    """Stream a mapped CSV file or directory tree as trace chunks (bit/s per slice and direction).

    The trace's slices are ``slices``, else the policy's, else the mapping's and
    those found in any file (:func:`scan_slices`). With a policy, slice values may
    also be the slices' S-NSSAI (``"1-0000B1"``) or their names in any case.
    Raises :class:`TraceReadError` with the file and line.
    """
    files = mapped_files(Path(path), mapping)
    mapping = resolve_time_unit(files, mapping)
    aliases = slice_aliases(mapping, policy)
    known = tuple(slices) if slices is not None else (policy.slice_names if policy else None)
    if known is None:
        known = scan_slices(files, mapping, aliases).names
    state = _State(mapping, interval_s, known, aliases, start, chunk_intervals)
    if mapping.merge and len(files) > 1:
        yield from _merged(files, state)
    else:
        for file in files:
            reader = CsvBlockReader(file, delimiter=mapping.delimiter)
            with _positions(reader):
                for block in reader:
                    yield from state.feed(reader, block)
    if state.binner is not None:
        yield from state.binner.finish()


@contextlib.contextmanager
def _positions(reader: CsvBlockReader) -> Iterator[None]:
    """Turn row problems and trace errors into TraceReadErrors naming ``reader``'s file."""
    try:
        yield
    except RowProblem as exc:
        raise reader.error(exc.row_tag, exc.message) from None
    except TraceError as exc:
        if isinstance(exc, TraceReadError):
            raise
        raise TraceReadError(reader.path, None, str(exc)) from None


def _merged(files: list[Path], state: _State) -> Iterator[Trace]:
    """Read time-sorted files side by side (one per cell, say), always feeding the block
    that ends earliest; intervals before every file's next row are complete."""
    m = state.mapping
    readers = [
        CsvBlockReader(f, delimiter=m.delimiter, block_bytes=MERGE_BLOCK_BYTES) for f in files
    ]
    streams = [iter(r) for r in readers]
    heads: dict[int, tuple[CsvBlock, npt.NDArray[np.float64]]] = {}

    def pull(i: int) -> None:
        reader = readers[i]
        with _positions(reader):
            block = next(streams[i], None)
            if block is None:
                return
            heads[i] = (block, report_times(reader, block, m))

    for i in range(len(readers)):
        pull(i)
    if state.start is None and heads:
        first = min(float(times.min()) for _, times in heads.values())
        state.start = float(np.floor(first / state.interval_s) * state.interval_s)
    while heads:
        i = min(heads, key=lambda j: float(heads[j][1].max()))
        block, times = heads.pop(i)
        pull(i)
        horizon = min((float(t.min()) for _, t in heads.values()), default=math.inf)
        with _positions(readers[i]):
            yield from state.feed(readers[i], block, times=times, horizon_time=horizon)


class _State:
    def __init__(
        self,
        mapping: ColumnMapping,
        interval_s: float,
        slices: tuple[str, ...] | None,
        aliases: dict[str, str],
        start: float | None,
        chunk_intervals: int,
    ) -> None:
        self.mapping = mapping
        self.interval_s = interval_s
        self.slices = slices
        self.aliases = aliases
        self.start = start
        self.chunk_intervals = chunk_intervals
        self.binner: IntervalBinner | None = None
        self.codes: dict[str, int] = {}

    def feed(
        self,
        reader: CsvBlockReader,
        block: CsvBlock,
        *,
        times: npt.NDArray[np.float64] | None = None,
        horizon_time: float = math.inf,
    ) -> Iterator[Trace]:
        """Bin one block; ``horizon_time`` (epoch s): no later row is earlier than this."""
        m = self.mapping
        if times is None:
            times = report_times(reader, block, m)
        raw_slices = slice_values(reader, block, m)
        if m.ue_column is not None:
            reader.column(m.ue_column)  # must exist; its values are never kept
        binner = self.binner if self.binner is not None else self._start(times, raw_slices)
        slice_idx = self._slice_codes(reader, block, raw_slices)
        index = binner.interval_index(times)
        if math.isfinite(horizon_time):
            binner.horizon = int(binner.interval_index(np.array([horizon_time]))[0])
        else:
            binner.horizon = None
        early = index < binner.emitted_intervals
        if early.any():
            k = int(np.argmax(early))
            what = "before the trace start" if index[k] < 0 else "out of time order"
            hint = (
                ": its interval was already complete"
                if m.merge
                else ": the files overlap in time (one per UE or cell?): read them side by "
                "side with --merge (merge: true in the mapping)"
            )
            raise RowProblem(block.line(k), f"row is {what}{hint}")
        scale = 8.0 if m.value_unit == "bytes" else RATE_SCALE[m.value_unit]
        sources: list[tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]] = []
        n = block.n_rows
        if m.value_column is not None:
            values = reader.floats(block, reader.column(m.value_column), m.value_column)
            if m.direction_column is not None:
                direction = _directions(reader, block, reader.column(m.direction_column))
            else:
                direction = np.full(n, DIRECTION_CODES[m.direction or "dl"], dtype=np.int64)
            sources.append((values, direction))
        for d, col in enumerate((m.dl_column, m.ul_column)):
            if col is not None:
                values = reader.floats(block, reader.column(col), col, empty_is_nan=True)
                sources.append((values, np.full(n, d, dtype=np.int64)))
        tags = block.tags()
        keep: list[npt.NDArray[np.bool_]] = []
        for values, _ in sources:
            ok = np.isnan(values) | ((values >= 0) & np.isfinite(values))
            if not ok.all():
                k = int(np.argmax(~ok))
                raise RowProblem(int(tags[k]), f"value {values[k]!r} is negative or infinite")
            keep.append(~np.isnan(values))
        # one add for all directions: a chunk emitted between two adds would cut the block
        yield from binner.add(
            np.concatenate([index[p] for p in keep]),
            np.concatenate([slice_idx[p] for p in keep]),
            np.concatenate([d[p] for (_, d), p in zip(sources, keep, strict=True)]),
            np.concatenate([v[p] * scale for (v, _), p in zip(sources, keep, strict=True)]),
            np.concatenate([tags[p] for p in keep]),
            time=np.concatenate([times[p] for p in keep]),
        )

    def _start(self, times: npt.NDArray[np.float64], raw_slices: list[str]) -> IntervalBinner:
        m = self.mapping
        if self.slices is None:
            self.slices = tuple(dict.fromkeys(self.aliases.get(v, v) for v in raw_slices))
        self.codes = {name: i for i, name in enumerate(self.slices)}
        origin = self.start
        if origin is None:
            origin = float(np.floor(times.min() / self.interval_s) * self.interval_s)
        present = (True, True)  # a direction column may name either
        if m.value_column is None:
            present = (m.dl_column is not None, m.ul_column is not None)
        elif m.direction is not None:
            present = (m.direction == "dl", m.direction == "ul")
        mode: BinMode = "volume" if m.value_unit == "bytes" else "rate"
        self.binner = IntervalBinner(
            origin,
            self.interval_s,
            self.slices,
            mode,
            chunk_intervals=self.chunk_intervals,
            directions_present=present,
        )
        return self.binner

    def _slice_codes(
        self, reader: CsvBlockReader, block: CsvBlock, raw: list[str]
    ) -> npt.NDArray[np.int64]:
        lookup = dict(self.codes)
        for alias, name in self.aliases.items():
            if name in self.codes:
                lookup[alias] = self.codes[name]
        try:
            return np.fromiter(map(lookup.__getitem__, raw), np.int64, count=len(raw))
        except KeyError:
            for k, value in enumerate(raw):
                if value not in lookup:
                    raise reader.error(
                        block.line(k),
                        f"unknown slice {value!r}: map it to one of {', '.join(self.codes)} "
                        f"(slice_names in the mapping, or --slice-name {value}=NAME)",
                    ) from None
            raise


def slice_values(reader: CsvBlockReader, block: CsvBlock, mapping: ColumnMapping) -> list[str]:
    """A block's slice column; with ``sd_column`` or ``slice_is_snssai`` each value read as an
    S-NSSAI (``"SST"`` / ``"SST-SD"``, as the policy's), a bad one refused with its line."""
    raw = block.columns[reader.column(mapping.slice_column)]
    if mapping.sd_column is None and not mapping.slice_is_snssai:
        return raw
    sds = None if mapping.sd_column is None else block.columns[reader.column(mapping.sd_column)]
    seen: dict[tuple[str, str | None], str] = {}
    out = []
    for k, value in enumerate(raw):
        key = (value, None if sds is None else sds[k])
        found = seen.get(key)
        if found is None:
            try:
                found = (
                    parse_snssai_label(value) if sds is None else canonical_snssai(value, sds[k])
                )
            except ValueError as exc:
                raise reader.error(block.line(k), f"slice: {exc}") from None
            seen[key] = found
        out.append(found)
    return out


def _directions(reader: CsvBlockReader, block: CsvBlock, col: int) -> npt.NDArray[np.int64]:
    values = block.columns[col]
    try:
        return np.fromiter(
            (DIRECTION_CODES[v.strip()] for v in values), np.int64, count=len(values)
        )
    except KeyError:
        for k, v in enumerate(values):
            if v.strip() not in DIRECTION_CODES:
                raise reader.error(
                    block.line(k), f"unknown direction {v!r} (use dl or ul)"
                ) from None
        raise


def report_times(
    reader: CsvBlockReader, block: CsvBlock, mapping: ColumnMapping
) -> npt.NDArray[np.float64]:
    """A block's report times, epoch s ``(n_rows,)``, rounded to ``report_period_s`` when
    set: reports of many UEs or cells, each a few ms off the common grid, then share
    their report time (rates are summed over the rows of one report time, averaged over
    the report times of an interval) and land in the interval of their grid slot."""
    times = _times(reader, block, reader.column(mapping.time_column), mapping.time_unit)
    p = mapping.report_period_s
    if p is None:
        return times
    out: npt.NDArray[np.float64] = np.round(times / p) * p
    return out


def _times(reader: CsvBlockReader, block: CsvBlock, col: int, unit: str) -> npt.NDArray[np.float64]:
    """Report times of a block as epoch seconds ``(n_rows,)``."""
    if unit == "s":
        return reader.floats(block, col, "time")
    if unit == "ms":
        return reader.floats(block, col, "time") / 1000.0
    values = block.columns[col]
    unique, inverse = np.unique(np.asarray(values), return_inverse=True)
    parsed = np.empty(len(unique))
    for k, text in enumerate(unique.tolist()):
        try:
            stamp = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            line = block.line(int(np.argmax(inverse == k)))
            raise reader.error(line, f"time {text!r} is not ISO 8601") from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=timezone.utc)
        parsed[k] = stamp.timestamp()
    result: npt.NDArray[np.float64] = parsed[inverse.reshape(-1)]
    return result
