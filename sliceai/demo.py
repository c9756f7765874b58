"""``sliceai demo`` (``make demo``): the campus scenario through every allocator.

Generates the bundled ``campus`` scenario (hospital and teaching-factory
slices plus campus eMBB on two links, :file:`policies/campus.yaml`), seeded,
writes it as a long CSV, replays every available allocator, prints the
comparison and writes ``report.json`` and the PNG plots, all into ``--out``
(default ``./demo-out``). The policy is read from the repository's
``policies/`` when the package runs from a checkout, else from the copy shipped
in ``sliceai/data/policies/``. The options are in :mod:`sliceai.replay.commands`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from sliceai.policy.bundled import bundled_policy_path
from sliceai.policy.units import parse_duration_s
from sliceai.replay import ReplayError, replay
from sliceai.replay.replay_command import load_policy_for_cli, print_summary, resolve_allocators
from sliceai.replay.report import write_json, write_plots
from sliceai.traffic import TraceError
from sliceai.traffic.generators import generate, load_scenario
from sliceai.traffic.longcsv import write_long_csv
from sliceai.usage import UsageError

DEMO_POLICY = "campus.yaml"
DEMO_SCENARIO = "campus"
DEMO_START = 1_764_547_200.0  # Monday 2025-12-01 00:00 UTC


def run(args: argparse.Namespace) -> int:
    """``sliceai demo``; the exit code."""
    try:
        interval_s = parse_duration_s(args.interval)
    except ValueError as exc:
        raise UsageError(f"--interval: {exc}") from None
    if args.days <= 0:
        raise UsageError("--days must be positive")
    policy = load_policy_for_cli(bundled_policy_path(DEMO_POLICY))
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
    print_summary(result, policy, verbose=args.verbose)
    write_json(result, out / "report.json")
    plots = write_plots(result, out, policy)
    print(
        f"\nwrote {out / 'report.json'} and {', '.join(p.name for p in plots)} "
        f"({time.perf_counter() - t0:.0f} s in all)",
        file=sys.stderr,
    )
    return 0
