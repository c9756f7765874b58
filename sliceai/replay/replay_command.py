"""``sliceai replay``: a trace through allocators, the comparison, a JSON report and plots.

:func:`load_policy_for_cli` and :func:`resolve_allocators` serve ``sliceai demo``
(:mod:`sliceai.demo`) too. Exit codes: see :mod:`sliceai.replay.commands`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sliceai.policy import Policy, PolicyError, load_policy
from sliceai.replay import ReplayError, allocator_names, make_allocator, replay
from sliceai.replay.engine import ReplayResult, directions_with_demand
from sliceai.replay.report import comparison_table, write_json, write_plots
from sliceai.replay.summary import summary_table
from sliceai.traffic import TraceError
from sliceai.traffic.longcsv import read_long_csv
from sliceai.usage import UsageError


def load_policy_for_cli(path: Path) -> Policy | int:
    """The policy, or the exit code after printing why not (2 unreadable, 1 invalid)."""
    try:
        return load_policy(path)
    except PolicyError as exc:
        if any(i.message.startswith("cannot read file") for i in exc.issues):
            raise UsageError(str(exc)) from None
        print(exc, file=sys.stderr)
        return 1


def resolve_allocators(spec: str) -> list[str]:
    """``all`` -> every available allocator; else the comma-separated names, checked."""
    if spec == "all":
        return list(allocator_names())
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise UsageError("--allocator needs a name or 'all'")
    for name in names:
        try:
            make_allocator(name)
        except ReplayError as exc:
            raise UsageError(str(exc)) from None
    return names


def print_summary(result: ReplayResult, policy: Policy, *, verbose: bool) -> None:
    """The short table and its sentences; with ``verbose`` the full table first."""
    if verbose:
        print(comparison_table(result, per_slice=True) + "\n")
    print(summary_table(result, policy))


def run(args: argparse.Namespace) -> int:
    """``sliceai replay TRACE --policy P ...``; the exit code."""
    if not args.trace.is_file():
        raise UsageError(f"{args.trace}: cannot read trace: no such file")
    policy = load_policy_for_cli(args.policy)
    if isinstance(policy, int):
        return policy
    names = resolve_allocators(args.allocator)
    try:
        present = directions_with_demand(read_long_csv(args.trace, slices=policy.slice_names))
        chunks = read_long_csv(args.trace, slices=policy.slice_names)
        result = replay(
            chunks,
            policy,
            names,
            trace_name=args.trace.name,
            progress=not args.no_progress,
            skip_failing=args.allocator == "all",
            demand_directions=present,
        )
    except TraceError as exc:
        raise UsageError(str(exc)) from None
    except ReplayError as exc:
        print(f"sliceai replay: {exc}", file=sys.stderr)
        return 1
    print_summary(result, policy, verbose=args.verbose)
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    if args.report:
        write_json(result, args.report / "report.json")
        for path in write_plots(result, args.report, policy):
            print(f"wrote {path}", file=sys.stderr)
    return 0
