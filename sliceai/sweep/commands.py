"""``sliceai sweep --traces GLOB... --policy P... --allocator A... --out DIR``: the parser.

The handler is :func:`sliceai.sweep.sweep_command.run` (loaded only when the command runs;
without ``sliceai[scale]`` it exits 2 naming the extra). Exit codes: 0 every cell replayed;
1 some cell failed (recorded in the table and the summary) or a policy is invalid; 2 usage
errors (no trace matches a pattern, unreadable policy, unknown allocator).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "sweep",
        help="replay every (trace, policy, allocator) on Ray; one table and report",
        description="Replay every combination of traces, policies and allocators on Ray, a "
        "worker per CPU (a local Ray with the machine's cores, or a cluster with --address). Each "
        "cell's result is written under DIR/cells/ as it finishes, so running the same sweep "
        "again skips finished cells. Writes DIR/results.parquet, DIR/results.csv (one row per "
        "cell and slice) and DIR/summary.md with plots. Needs sliceai[scale].",
    )
    p.add_argument(
        "--traces",
        nargs="+",
        required=True,
        metavar="GLOB",
        help="trace files or patterns (long CSV, Parquet, ...; quote patterns, ** recurses)",
    )
    p.add_argument(
        "--policy", nargs="+", required=True, type=Path, metavar="P", help="slice policies"
    )
    p.add_argument(
        "--allocator",
        nargs="+",
        default=["all"],
        metavar="A",
        help="allocators (names, comma-separated lists or 'all', the default)",
    )
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    p.add_argument(
        "--address",
        metavar="ADDR",
        help="Ray cluster to run on, HOST:PORT of its head (default: a local Ray); its nodes "
        "must see --traces, --policy and --out at the same paths (shared storage)",
    )
    p.add_argument(
        "--num-cpus",
        type=int,
        metavar="N",
        help="local Ray's CPUs, the most workers (default: all cores)",
    )
    p.add_argument("--no-plots", action="store_true", help="no PNG plots in the summary")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler="sliceai.sweep.sweep_command:run")
