"""``sliceai sweep``: find the traces, check policies and allocators, run, write the results."""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

from sliceai.policy import PolicyError, load_policy
from sliceai.replay.replay_command import resolve_allocators
from sliceai.sweep.cells import plan_cells
from sliceai.sweep.report import summary_table, write_summary, write_table
from sliceai.sweep.runner import run_sweep
from sliceai.usage import UsageError


def find_traces(patterns: list[str]) -> list[Path]:
    """Files matching each pattern (a file name matches itself), in order, each once."""
    found: dict[Path, None] = {}
    for pattern in patterns:
        matches = sorted(Path(m) for m in glob.glob(pattern, recursive=True))
        files = [m for m in matches if m.is_file()]
        if not files:
            raise UsageError(f"no trace file matches {pattern!r}")
        found.update(dict.fromkeys(files))
    return list(found)


def run(args: argparse.Namespace) -> int:
    """``sliceai sweep ...``; the exit code."""
    traces = find_traces(args.traces)
    for path in args.policy:
        if not path.is_file():
            raise UsageError(f"{path}: cannot read policy: no such file")
        try:
            load_policy(path)
        except PolicyError as exc:
            print(exc, file=sys.stderr)
            return 1
    allocators: list[str] = []
    for spec in args.allocator:
        allocators += [a for a in resolve_allocators(spec) if a not in allocators]
    if args.num_cpus is not None and args.num_cpus < 1:
        raise UsageError("--num-cpus must be at least 1")
    cells = plan_cells(traces, args.policy, allocators)
    args.out.mkdir(parents=True, exist_ok=True)
    print(
        f"sweep: {len(traces)} trace(s) x {len(args.policy)} policy(ies) x "
        f"{len(allocators)} allocator(s) = {len(cells)} cells into {args.out}",
        file=sys.stderr,
    )
    records, skipped = run_sweep(
        cells,
        args.out,
        address=args.address,
        num_cpus=args.num_cpus,
        progress=not args.no_progress,
    )
    if skipped:
        print(f"sweep: {skipped} cell(s) already finished, skipped", file=sys.stderr)
    written = write_table(records, args.out)
    written += write_summary(records, args.out, plots=not args.no_plots)
    print(summary_table(records))
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    failed = sum(r["status"] != "ok" for r in records)
    if failed:
        print(f"sliceai sweep: {failed} of {len(cells)} cells failed", file=sys.stderr)
        return 1
    return 0
