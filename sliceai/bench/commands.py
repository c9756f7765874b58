"""``sliceai bench``: run benchmarks, print a table or JSON lines, update BENCHMARKS.md."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sliceai.bench import BENCHMARKS, Figure, iter_benchmarks
from sliceai.bench.report import render_table, update_markdown
from sliceai.usage import UsageError


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "bench",
        help="run benchmarks (speed and memory targets live here, not in tests)",
        description="Run benchmarks. Each figure may carry a peer measured in the same run; "
        "ratio = value / peer_value.",
    )
    p.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"benchmarks to run (default all: {', '.join(BENCHMARKS)})",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per figure on stdout")
    p.add_argument(
        "--quick", action="store_true", help="fewer repeats and smaller cases (for smoke tests)"
    )
    p.add_argument(
        "--markdown",
        metavar="FILE",
        type=Path,
        help="rewrite this benchmark's sections of FILE (e.g. BENCHMARKS.md)",
    )
    p.set_defaults(handler="sliceai.bench.commands:run")


def run(args: argparse.Namespace) -> int:
    """``sliceai bench [NAME...]``."""
    names = args.names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise UsageError(
            f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}"
        )
    figures: list[Figure] = []
    for fig in iter_benchmarks(names, args.quick):
        figures.append(fig)
        if args.json:
            print(json.dumps(fig.as_json()), flush=True)
        else:
            print(
                f"  {fig.bench}/{fig.case} {fig.metric}: {fig.value:.4g} {fig.unit}",
                file=sys.stderr,
                flush=True,
            )
    if not args.json:
        print(render_table(figures))
    if args.markdown is not None:
        command = "sliceai bench " + " ".join(names) + (" --quick" if args.quick else "")
        update_markdown(args.markdown, names, figures, command)
        print(f"updated {args.markdown}", file=sys.stderr)
    return 0
