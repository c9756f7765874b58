"""``sliceai federate``: federated training of the forecast model with Flower.

Only the parsers live here (no flwr, no torch); the handler is
:func:`sliceai.federated.command.simulate_command`, loaded when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

HANDLERS = "sliceai.federated.command"


def register(subparsers: Any) -> None:
    fed = subparsers.add_parser(
        "federate",
        help="train the forecast model across sites with Flower (weights travel, traces stay)",
    )
    forms = fed.add_subparsers(dest="form", metavar="FORM", required=True)
    sim = forms.add_parser(
        "simulate",
        help="N sites on this machine (Flower's simulation runtime), each its own traces",
    )
    sim.add_argument(
        "--site",
        action="append",
        required=True,
        metavar="NAME=TRACES[,TRACES...]",
        help="a site and its long-CSV traces (repeat, at least two sites)",
    )
    sim.add_argument("--rounds", type=int, default=10, help="federated rounds (default 10)")
    sim.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    sim.add_argument("--init", default="default", help="default | checkpoint DIR to start from")
    sim.add_argument("--member", type=int, default=0, help="network of the ensemble to federate")
    sim.add_argument(
        "--local-steps", type=int, default=30, help="batches each site trains per round"
    )
    sim.add_argument("--batch-size", type=int, default=128)
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument(
        "--no-secure-aggregation",
        dest="secure_aggregation",
        action="store_false",
        help="send plain parameters (SecAgg+ is on by default)",
    )
    sim.add_argument(
        "--dp-noise",
        type=float,
        default=None,
        metavar="Z",
        help="client-level differential privacy: Gaussian noise multiplier (off by default)",
    )
    sim.add_argument(
        "--dp-clip", type=float, default=1.0, metavar="C", help="update clipping norm (DP)"
    )
    sim.add_argument("--cpus", type=int, default=None, help="simulation workers (default: sites)")
    sim.set_defaults(handler=f"{HANDLERS}:simulate_command")


def parse_sites(values: list[str]) -> list[tuple[str, list[Path]]]:
    """``NAME=A.csv,B.csv`` -> (name, paths); argparse.ArgumentTypeError if malformed."""
    out = []
    for text in values:
        name, sep, files = text.partition("=")
        if not sep or not name or not files:
            raise argparse.ArgumentTypeError(f"--site {text!r}: expected NAME=TRACES[,TRACES...]")
        out.append((name, [Path(p) for p in files.split(",") if p]))
    return out
