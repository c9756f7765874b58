"""``sliceai sim`` (synthetic scenarios) and ``sliceai trace convert|info``."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate
from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

from sliceai.policy.loader import PolicyError, load_policy
from sliceai.policy.model import Policy
from sliceai.policy.units import UnitError, parse_duration_s
from sliceai.traffic.detect import describe, infer_interval, read_header
from sliceai.traffic.generators import generate, load_scenario, resolve_slices
from sliceai.traffic.mapped import (
    ColumnMapping,
    load_mapping,
    mapped_files,
    resolve_time_unit,
    scan_slices,
    slice_aliases,
)
from sliceai.traffic.pcap import PcapStats
from sliceai.traffic.presets import PRESETS, preset_fields
from sliceai.traffic.readers import detect_format, open_trace, write_trace
from sliceai.traffic.trace import Trace, TraceError
from sliceai.usage import UsageError

DEFAULT_START = "2026-01-05"  # a Monday


def register(subparsers: Any) -> None:
    sim = subparsers.add_parser(
        "sim",
        help="generate a synthetic scenario trace (hospital, factory, campus or a YAML file)",
        description="Generate a seeded synthetic trace of a scenario and write it as long CSV.",
    )
    sim.add_argument("scenario", metavar="SCENARIO", help="bundled name or scenario YAML file")
    sim.add_argument("--days", type=float, default=1.0, help="length in days (default 1)")
    sim.add_argument(
        "--interval", default="1s", help="interval, e.g. 1s, 250ms, 15min (default 1s)"
    )
    sim.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sim.add_argument(
        "--start",
        default=DEFAULT_START,
        help=f"start, ISO date/time, UTC if no offset ({DEFAULT_START})",
    )
    sim.add_argument(
        "-o",
        "--output",
        type=Path,
        help="output long CSV, or Parquet if it ends in .parquet (default SCENARIO.csv)",
    )
    sim.set_defaults(handler="sliceai.traffic.commands:sim")

    trace = subparsers.add_parser(
        "trace", help="convert and inspect traces (CSV, KPM exports, pcap)"
    )
    sub = trace.add_subparsers(dest="trace_command", metavar="ACTION", required=True)
    convert = sub.add_parser(
        "convert",
        help="read any supported trace and write long CSV",
        description="Read a long CSV, a pcap or a column-mapped export (a file or a directory "
        "of them, e.g. one CSV per UE) and write long CSV. For an export, --preset kpm-ue "
        "reads the common per-UE KPM layout without a mapping file; the interval is the "
        "median spacing of the report times unless --interval is given; --dry-run prints "
        "what was detected and writes nothing.",
    )
    _input_options(convert)
    convert.add_argument(
        "-o", "--output", type=Path, help="output long CSV, or Parquet if it ends in .parquet"
    )
    convert.add_argument(
        "--dry-run",
        action="store_true",
        help="mapped CSV: print the files, columns, time unit, interval, slices, directions "
        "and rows detected; write nothing",
    )
    convert.set_defaults(handler="sliceai.traffic.commands:convert")
    info = sub.add_parser("info", help="summarise a trace: slices, span, load per slice")
    _input_options(info)
    info.set_defaults(handler="sliceai.traffic.commands:info")


def _input_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", type=Path, metavar="TRACE", help="file or directory (mapped CSV)")
    p.add_argument("--format", choices=("auto", "long", "mapped", "pcap"), default="auto")
    p.add_argument("--policy", type=Path, help="slice policy (needed for pcap; fixes slice order)")
    p.add_argument(
        "--interval",
        help="interval, e.g. 250ms (pcap default 1s; long and mapped CSV: inferred from the "
        "timestamps)",
    )
    p.add_argument(
        "--ue-prefix",
        action="append",
        default=[],
        metavar="PREFIX",
        help="pcap: UE address pool; packets from it are UL, to it DL (repeatable)",
    )
    p.add_argument(
        "--include-unmatched", action="store_true", help="pcap: add an 'unmatched' slice"
    )
    g = p.add_argument_group(
        "column mapping (mapped CSV; flags override --mapping, which overrides --preset)"
    )
    g.add_argument("--mapping", type=Path, help="YAML column mapping file")
    g.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        help="columns of a common export: kpm-ue = one CSV per UE, epoch-ms time, numeric "
        "slice ids (0 embb, 1 mmtc, 2 urllc), Mbit/s rates, IMSI; kpm-snssai = columns "
        "DRB.UEThpDl.SNSSAI / DRB.UEThpUl.SNSSAI (kbit/s) with the S-NSSAI (one column or "
        "sST + sD), matched to --policy by S-NSSAI",
    )
    g.add_argument(
        "--slice-name",
        action="append",
        default=[],
        metavar="VALUE=NAME",
        help="name the slice column's VALUE as slice NAME (repeatable)",
    )
    for name in (
        "time-column",
        "slice-column",
        "ue-column",
        "value-column",
        "dl-column",
        "ul-column",
        "direction-column",
    ):
        g.add_argument(f"--{name}", metavar="COLUMN")
    g.add_argument("--time-unit", choices=("auto", "s", "ms", "iso"))
    g.add_argument("--value-unit", choices=("bps", "kbps", "Mbps", "Gbps", "bytes"))
    g.add_argument("--direction", choices=("dl", "ul"), help="constant direction of value-column")
    g.add_argument("--delimiter", help="field separator (default ,)")
    g.add_argument("--pattern", help="file pattern inside a directory (default *.csv)")
    g.add_argument(
        "--merge",
        action="store_const",
        const=True,
        help="the directory's files cover the same period (one per cell): read them side by side",
    )


def _duration(text: str | None, what: str) -> float | None:
    if text is None:
        return None
    try:
        return parse_duration_s(text)
    except UnitError as exc:
        raise UsageError(f"{what}: {exc}") from None


def _parse_start(text: str) -> float:
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--start {text!r} is not an ISO date or date-time") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.timestamp()


def sim(args: argparse.Namespace) -> int:
    """``sliceai sim SCENARIO``: generate a seeded trace and write it as long CSV."""
    interval = _duration(args.interval, "--interval") or 1.0
    start = _parse_start(args.start)
    if not math.isfinite(args.days) or args.days <= 0:
        raise UsageError("--days must be positive")
    n = max(1, round(args.days * 86400.0 / interval))
    try:
        scenario = load_scenario(args.scenario)
        n_slices = len(resolve_slices(scenario))
        with tqdm(
            total=n_slices, desc=f"sim {scenario.name}", unit="slice", file=sys.stderr
        ) as bar:
            trace = generate(
                scenario,
                start=start,
                n_intervals=n,
                interval_s=interval,
                seed=args.seed,
                on_slice=lambda _name: bar.update(),
            )
        output = args.output or Path(f"{scenario.name}.csv")
        chunks = tqdm(
            trace.chunks(4096),
            total=math.ceil(n / 4096),
            desc=f"write {output}",
            unit="chunk",
            file=sys.stderr,
        )
        write_trace(chunks, output)
    except TraceError as exc:
        raise UsageError(str(exc)) from None
    rows = n * len(trace.slices) * 2
    print(f"{output}: {n} intervals x {len(trace.slices)} slices x 2 directions = {rows} rows")
    return 0


def _policy(args: argparse.Namespace) -> Policy | None:
    if args.policy is None:
        return None
    try:
        return load_policy(args.policy)
    except PolicyError as exc:
        raise UsageError(str(exc)) from None


MAPPING_FLAGS = (
    "time_column",
    "slice_column",
    "ue_column",
    "value_column",
    "dl_column",
    "ul_column",
    "direction_column",
    "time_unit",
    "value_unit",
    "direction",
    "delimiter",
    "pattern",
    "merge",
)


def _mapping(args: argparse.Namespace) -> ColumnMapping | None:
    """The column mapping: ``--preset`` fields, then ``--mapping``'s, then the flags."""
    fields = {k: getattr(args, k) for k in MAPPING_FLAGS if getattr(args, k) is not None}
    names = {}
    for item in args.slice_name:
        value, sep, name = item.partition("=")
        if not sep or not value or not name:
            raise UsageError(f"--slice-name {item!r}: write VALUE=NAME, e.g. 0=embb")
        names[value] = name
    if args.preset is None and args.mapping is None and not fields and not names:
        return None
    base: dict[str, Any] = {}
    if args.preset is not None:
        first, header = read_header(args.input, fields.get("pattern", "*.csv"))
        base = preset_fields(args.preset, header, first, fields)
    if args.mapping is not None:
        base = {**base, **load_mapping(args.mapping).model_dump(exclude_unset=True)}
    merged = {**base, **fields}
    if names:
        merged["slice_names"] = {**merged.get("slice_names", {}), **names}
    return ColumnMapping.model_validate(merged)


def _mapped_settings(
    args: argparse.Namespace, mapping: ColumnMapping, policy: Policy | None, *, quiet: bool = False
) -> tuple[ColumnMapping, float, tuple[str, ...] | None]:
    """The mapping with its report grid, the interval (given, else inferred and said on
    stderr) and, for a preset without a policy, the slices found in the files."""
    files = mapped_files(args.input, mapping)
    interval = _duration(args.interval, "--interval")
    inferred = infer_interval(files, mapping)
    if mapping.report_period_s is None:
        mapping = mapping.model_copy(update={"report_period_s": inferred.period_s})
    if interval is None:
        if not quiet:
            print(inferred.sentence(), file=sys.stderr)
        interval = inferred.interval_s
    slices = None
    if args.preset is not None and policy is None:
        resolved = resolve_time_unit(files, mapping)
        slices = scan_slices(
            files, resolved, slice_aliases(resolved, None), include_mapped=False
        ).names
    return mapping, interval, slices


def _open(args: argparse.Namespace, stats: Any = None) -> Iterator[Trace]:
    policy = _policy(args)
    try:
        mapping = _mapping(args)
        interval = _duration(args.interval, "--interval")
        slices = None
        kind = args.format
        if kind == "auto":
            kind = detect_format(args.input, mapping)
        if kind == "mapped" and mapping is not None:
            mapping, interval, slices = _mapped_settings(args, mapping, policy)
        return open_trace(
            args.input,
            format=args.format,
            policy=policy,
            slices=slices,
            interval_s=interval,
            mapping=mapping,
            ue_prefixes=args.ue_prefix,
            include_unmatched=args.include_unmatched,
            pcap_stats=stats,
        )
    except (TraceError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def _dry_run(args: argparse.Namespace) -> int:
    policy = _policy(args)
    try:
        mapping = _mapping(args)
        if mapping is None or detect_format(args.input, mapping) != "mapped":
            raise UsageError(
                "--dry-run describes column-mapped exports: give --preset, --mapping or "
                "column flags"
            )
        given = _duration(args.interval, "--interval")
        mapping, _, _ = _mapped_settings(args, mapping, policy, quiet=True)
        print(describe(args.input, mapping, policy=policy, interval_s=given, preset=args.preset))
    except (TraceError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    return 0


def convert(args: argparse.Namespace) -> int:
    """``sliceai trace convert``: any supported trace -> long CSV."""
    if args.dry_run:
        return _dry_run(args)
    if args.output is None:
        raise UsageError("give the output file: -o FILE (or --dry-run)")
    chunks = tqdm(_open(args), desc=f"convert {args.input}", unit="chunk", file=sys.stderr)
    try:
        n = write_trace(chunks, args.output)
    except TraceError as exc:
        print(f"sliceai trace convert: {exc}", file=sys.stderr)
        return 1
    print(f"{args.output}: {n} intervals")
    return 0


def info(args: argparse.Namespace) -> int:
    """``sliceai trace info``: slices, span and load per slice of a trace."""
    stats = PcapStats()
    summary: _Summary | None = None
    try:
        for chunk in _open(args, stats):
            summary = summary or _Summary(chunk)
            summary.add(chunk)
    except TraceError as exc:
        print(f"sliceai trace info: {exc}", file=sys.stderr)
        return 1
    if summary is None:
        print(f"{args.input}: no data")
        return 0
    print(summary.render())
    if stats.packets:
        print(
            f"\npackets {stats.packets} ({stats.bytes} bytes); not IP {stats.non_ip_packets}; "
            f"unmatched {stats.unmatched_packets} ({stats.unmatched_bytes} bytes)"
        )
    return 0


class _Summary:
    """Running per-slice statistics over streamed chunks (mean, max, missing share)."""

    def __init__(self, first: Trace) -> None:
        self.first = first
        shape = (len(first.slices), 2)
        self.n = 0
        self.total = np.zeros(shape)
        self.count = np.zeros(shape)
        self.peak = np.zeros(shape)

    def add(self, chunk: Trace) -> None:
        load = chunk.load_bps
        present = ~np.isnan(load)
        self.n += chunk.n_intervals
        self.total += np.where(present, load, 0.0).sum(axis=0)
        self.count += present.sum(axis=0)
        if chunk.n_intervals:
            self.peak = np.fmax(self.peak, np.nanmax(np.where(present, load, 0.0), axis=0))

    def render(self) -> str:
        t = self.first
        end = t.start + self.n * t.interval_s
        head = (
            f"{self.n} intervals of {t.interval_s:g} s, {_iso(t.start)} .. {_iso(end)}, "
            f"{len(t.slices)} slices"
        )
        rows = []
        mean = self.total / np.maximum(self.count, 1)
        for i, name in enumerate(t.slices):
            missing = 1.0 - self.count[i] / max(self.n, 1)
            rows.append(
                [
                    name,
                    f"{format_rate(mean[i, 0])} / {format_rate(mean[i, 1])}",
                    f"{format_rate(self.peak[i, 0])} / {format_rate(self.peak[i, 1])}",
                    f"{missing[0]:.1%} / {missing[1]:.1%}",
                ]
            )
        table = tabulate(rows, headers=["slice", "mean DL/UL", "peak DL/UL", "missing DL/UL"])
        return f"{head}\n\n{table}"


def format_rate(bps: float) -> str:
    """Three significant digits: ``12345678.9`` -> ``"12.3 Mbps"``."""
    for unit, scale in (("Gbps", 1e9), ("Mbps", 1e6), ("kbps", 1e3)):
        if bps >= scale:
            return f"{bps / scale:.3g} {unit}"
    return f"{bps:.3g} bps"


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, timezone.utc).isoformat()
