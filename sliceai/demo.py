"""``sliceai demo`` (``make demo``): the campus scenario through every allocator.

Generates the bundled ``campus`` scenario (hospital and teaching-factory
slices plus campus eMBB on two links, :file:`policies/campus.yaml`), seeded,
writes it as a long CSV, replays every available allocator, prints the
comparison and writes ``report.json`` and the PNG plots, all into ``--out``
(default ``./demo-out``). The policy is read from the repository's
``policies/`` when the package runs from a checkout, else from the copy shipped
in ``sliceai/data/policies/``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from sliceai.policy.units import parse_duration_s

PACKAGE_DIR = Path(__file__).resolve().parent
DEMO_POLICY = "campus.yaml"
DEMO_SCENARIO = "campus"
DEMO_START = 1_764_547_200.0  # Monday 2025-12-01 00:00 UTC


def policy_path(name: str = DEMO_POLICY) -> Path:
    """``policies/NAME`` beside the package (a checkout), else the bundled copy."""
    beside = PACKAGE_DIR.parent / "policies" / name
    return beside if beside.is_file() else PACKAGE_DIR / "data" / "policies" / name


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="generate the campus scenario, replay every allocator, write a report",
        description="Generate the bundled campus scenario, replay every allocator, print the "
        "comparison and write the trace, report.json and plots into --out.",
    )
    p.add_argument(
        "--out", type=Path, default=Path("demo-out"), help="output folder (default demo-out)"
    )
    p.add_argument("--days", type=float, default=3.0, help="days of traffic (default 3)")
    p.add_argument("--interval", default="30s", help="interval length (default 30s)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.add_argument(
        "--allocator", default="all", metavar="NAME|all", help="allocators (default all)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from sliceai.cli import UsageError
    from sliceai.replay import ReplayError, replay
    from sliceai.replay.commands import load_policy_for_cli, resolve_allocators
    from sliceai.replay.report import comparison_table, write_json, write_plots
    from sliceai.traffic import TraceError
    from sliceai.traffic.generators import generate, load_scenario
    from sliceai.traffic.longcsv import write_long_csv

    try:
        interval_s = parse_duration_s(args.interval)
    except ValueError as exc:
        raise UsageError(f"--interval: {exc}") from None
    if args.days <= 0:
        raise UsageError("--days must be positive")
    policy = load_policy_for_cli(policy_path())
    if isinstance(policy, int):
        return policy
    names = resolve_allocators(args.allocator)
    t0 = time.perf_counter()
    n_intervals = max(1, round(args.days * 86400 / interval_s))
    try:
        trace = generate(
            load_scenario(DEMO_SCENARIO),
            start=DEMO_START,
            n_intervals=n_intervals,
            interval_s=interval_s,
            seed=args.seed,
        )
    except TraceError as exc:
        print(f"sliceai demo: {exc}", file=sys.stderr)
        return 1
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    write_long_csv(trace, out / "campus-trace.csv")
    print(
        f"generated {n_intervals} intervals of {interval_s:g} s ({args.days:g} days, seed "
        f"{args.seed}) in {time.perf_counter() - t0:.1f} s -> {out / 'campus-trace.csv'}",
        file=sys.stderr,
    )
    try:
        result = replay(
            trace,
            policy,
            names,
            trace_name="campus",
            progress=not args.no_progress,
            skip_failing=args.allocator == "all",
        )
    except ReplayError as exc:
        print(f"sliceai demo: {exc}", file=sys.stderr)
        return 1
    print(comparison_table(result, per_slice=True))
    write_json(result, out / "report.json")
    plots = write_plots(result, out)
    print(
        f"\nwrote {out / 'report.json'} and {', '.join(p.name for p in plots)} "
        f"({time.perf_counter() - t0:.0f} s in all)",
        file=sys.stderr,
    )
    return 0
