"""``sliceai replay TRACE --policy P --allocator NAME|all [--json FILE] [--report DIR]``.

Exit codes: 0 done; 1 the policy is invalid or the trace does not fit it; 2 usage
errors and unreadable or malformed files (trace or policy).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sliceai.policy import Policy, PolicyError, load_policy


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "replay",
        help="replay a traffic trace through allocators and compare SLA violations and waste",
        description="Replay a long-CSV trace (timestamp,slice,direction,bps) through one or all "
        "allocators and a fluid-queue link model; print a comparison, optionally write a JSON "
        "report and PNG plots.",
    )
    p.add_argument("trace", type=Path, metavar="TRACE", help="long CSV trace")
    p.add_argument("--policy", type=Path, required=True, metavar="P", help="slice policy YAML")
    p.add_argument(
        "--allocator",
        default="all",
        metavar="NAME|all",
        help="allocator to replay, a comma-separated list, or 'all' (default)",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="write the JSON report here")
    p.add_argument(
        "--report", type=Path, metavar="DIR", help="write report.json and PNG plots here"
    )
    p.add_argument("--per-slice", action="store_true", help="also print one row per slice")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def load_policy_for_cli(path: Path) -> Policy | int:
    """The policy, or the exit code after printing why not (2 unreadable, 1 invalid)."""
    from sliceai.cli import UsageError

    try:
        return load_policy(path)
    except PolicyError as exc:
        if any(i.message.startswith("cannot read file") for i in exc.issues):
            raise UsageError(str(exc)) from None
        print(exc, file=sys.stderr)
        return 1


def resolve_allocators(spec: str) -> list[str]:
    """``all`` -> every available allocator; else the comma-separated names, checked."""
    from sliceai.cli import UsageError
    from sliceai.replay import allocator_names, make_allocator
    from sliceai.replay.errors import ReplayError

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


def _run(args: argparse.Namespace) -> int:
    from sliceai.cli import UsageError
    from sliceai.replay import ReplayError, replay
    from sliceai.replay.report import comparison_table, write_json, write_plots
    from sliceai.traffic import TraceError
    from sliceai.traffic.longcsv import read_long_csv

    if not args.trace.is_file():
        raise UsageError(f"{args.trace}: cannot read trace: no such file")
    policy = load_policy_for_cli(args.policy)
    if isinstance(policy, int):
        return policy
    names = resolve_allocators(args.allocator)
    try:
        chunks = read_long_csv(args.trace, slices=policy.slice_names)
        result = replay(
            chunks,
            policy,
            names,
            trace_name=args.trace.name,
            progress=not args.no_progress,
            skip_failing=args.allocator == "all",
        )
    except TraceError as exc:
        raise UsageError(str(exc)) from None
    except ReplayError as exc:
        print(f"sliceai replay: {exc}", file=sys.stderr)
        return 1
    print(comparison_table(result, per_slice=args.per_slice))
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    if args.report:
        write_json(result, args.report / "report.json")
        for path in write_plots(result, args.report):
            print(f"wrote {path}", file=sys.stderr)
    return 0
