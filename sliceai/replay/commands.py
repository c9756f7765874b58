"""``sliceai replay TRACE --policy P --allocator NAME|all [--json FILE] [--report DIR]``,
``sliceai assess`` and ``sliceai demo``: their options (the handlers are
:mod:`sliceai.replay.replay_command`, :mod:`sliceai.assess` and :mod:`sliceai.demo`).

Exit codes: 0 done; 1 the policy is invalid or the trace does not fit it; 2 usage
errors and unreadable or malformed files (trace or policy).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


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
    p.add_argument(
        "-v",
        "--verbose",
        "--per-slice",
        dest="verbose",
        action="store_true",
        help="also print the full table, one row per allocator and slice",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler="sliceai.replay.replay_command:run")

    assess: argparse.ArgumentParser = subparsers.add_parser(
        "assess",
        help="replay every allocator and score the forecast on traces; judge sliceai",
        description="Replay every allocator and score the forecaster on each trace, then "
        "judge the sliceai allocator: its cost against the cheapest baseline and the cheapest "
        "one that keeps every slice within its risk x 1.5 (over the intervals the policy could "
        "serve), its slices over their risk, and the forecast's CRPS, coverage and tail loss "
        "against seasonal naive, EWMA and the rolling quantile.",
    )
    assess.add_argument("traces", type=Path, nargs="*", metavar="TRACE", help="long CSV traces")
    assess.add_argument("--policy", type=Path, metavar="P", help="their slice policy")
    assess.add_argument(
        "--manifest",
        type=Path,
        metavar="FILE",
        help="lines 'TRACE POLICY' instead of TRACE... --policy (make assess writes one)",
    )
    assess.add_argument(
        "--allocator", default="all", metavar="NAME|all", help="allocators (default all)"
    )
    assess.add_argument(
        "--model", default="default", help="forecaster: default, empirical or a checkpoint"
    )
    assess.add_argument("--device", default="auto", help="auto, cpu or cuda")
    assess.add_argument("--json", type=Path, metavar="FILE", help="write everything here")
    assess.add_argument(
        "--markdown", type=Path, metavar="FILE", help="write the tables into FILE's section"
    )
    assess.add_argument("--no-progress", action="store_true", help="no progress bars")
    assess.set_defaults(handler="sliceai.assess:run")

    demo: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="generate the campus scenario, replay every allocator, write a report",
        description="Generate the bundled campus scenario, replay every allocator, print the "
        "comparison and write the trace, report.json and plots into --out.",
    )
    demo.add_argument(
        "--out", type=Path, default=Path("demo-out"), help="output folder (default demo-out)"
    )
    demo.add_argument("--days", type=float, default=3.0, help="days of traffic (default 3)")
    demo.add_argument("--interval", default="30s", help="interval length (default 30s)")
    demo.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    demo.add_argument(
        "--allocator", default="all", metavar="NAME|all", help="allocators (default all)"
    )
    demo.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also print the full table, one row per allocator and slice",
    )
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo.set_defaults(handler="sliceai.demo:run")
