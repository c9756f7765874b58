"""``sliceai federate``: federated training of the forecast model with Flower.

Only the parsers live here (no flwr, no torch); the handlers are in
:mod:`sliceai.federated.command`, loaded when the command runs. ``simulate``: N sites on
this machine; ``server`` / ``client``: the same training over the network on Flower's
deployment engine (:mod:`sliceai.federated.deployment`).
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
    _training_args(sim)
    sim.add_argument("--cpus", type=int, default=None, help="simulation workers (default: sites)")
    sim.set_defaults(handler=f"{HANDLERS}:simulate_command")

    srv = forms.add_parser(
        "server",
        help="the federation's server: a Flower SuperLink (TLS, SuperNode keys) and the run",
    )
    srv.add_argument(
        "--site",
        action="append",
        required=True,
        metavar="NAME=KEY.pub",
        help="a site and its SuperNode's OpenSSH EC public key (repeat, at least two)",
    )
    srv.add_argument("--listen", default="127.0.0.1:9092", help="HOST:PORT of the SuperLink")
    srv.add_argument("--tls-cert", type=Path, required=True, help="the SuperLink's certificate")
    srv.add_argument("--tls-key", type=Path, required=True, help="its private key")
    srv.add_argument("--ca", type=Path, required=True, help="the CA that signed --tls-cert")
    srv.add_argument(
        "--interval",
        default="60s",
        help="the sites' trace interval: picks the ensemble to federate (default 60s)",
    )
    _training_args(srv)
    srv.add_argument(
        "--timeout", type=float, default=None, help="stop the run after this many seconds"
    )
    srv.add_argument("--flower-log", type=Path, default=None, help="keep Flower's log here")
    srv.set_defaults(handler=f"{HANDLERS}:server_command")

    cli = forms.add_parser(
        "client", help="one site: a Flower SuperNode that trains on the site's traces"
    )
    cli.add_argument(
        "--site",
        required=True,
        metavar="NAME=TRACES[,TRACES...]",
        help="this site and its long-CSV traces (they never leave it)",
    )
    cli.add_argument("--superlink", required=True, help="HOST:PORT of the server")
    cli.add_argument("--ca", type=Path, required=True, help="the CA of the server's certificate")
    cli.add_argument(
        "--key",
        type=Path,
        required=True,
        help="this site's OpenSSH EC private key (its .pub given to the server's --site)",
    )
    cli.add_argument("--init", default="default", help="default | the server's --init DIR")
    cli.add_argument(
        "--max-wait",
        type=float,
        default=None,
        help="give up after this many seconds without the server (default: keep trying)",
    )
    cli.set_defaults(handler=f"{HANDLERS}:client_command")


def _training_args(parser: argparse.ArgumentParser) -> None:
    """The settings of a federation (simulate and server alike)."""
    parser.add_argument("--rounds", type=int, default=10, help="federated rounds (default 10)")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    parser.add_argument("--init", default="default", help="default | checkpoint DIR to start from")
    parser.add_argument("--member", type=int, default=0, help="network of the ensemble to federate")
    parser.add_argument(
        "--local-steps", type=int, default=30, help="batches each site trains per round"
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--proximal-mu",
        type=float,
        default=0.0,
        metavar="MU",
        help="FedProx: add MU/2 ||w - w_global||^2 to each site's objective (0: FedAvg)",
    )
    parser.add_argument(
        "--no-secure-aggregation",
        dest="secure_aggregation",
        action="store_false",
        help="send plain parameters (SecAgg+ is on by default)",
    )
    parser.add_argument(
        "--dp-noise",
        type=float,
        default=None,
        metavar="Z",
        help="client-level differential privacy: Gaussian noise multiplier (off by default)",
    )
    parser.add_argument(
        "--dp-clip", type=float, default=1.0, metavar="C", help="update clipping norm (DP)"
    )


def parse_sites(values: list[str]) -> list[tuple[str, list[Path]]]:
    """``NAME=A.csv,B.csv`` -> (name, paths); argparse.ArgumentTypeError if malformed."""
    out = []
    for text in values:
        name, sep, files = text.partition("=")
        if not sep or not name or not files:
            raise argparse.ArgumentTypeError(f"--site {text!r}: expected NAME=TRACES[,TRACES...]")
        out.append((name, [Path(p) for p in files.split(",") if p]))
    return out
