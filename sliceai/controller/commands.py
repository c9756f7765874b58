"""``sliceai controller``: the options of the os-ken app that enforces plans as OpenFlow meters.

This module only builds the parser (the app parses ``SLICEAI_CONTROLLER_ARGS``
with it too under ``ryu-manager``, see :mod:`sliceai.controller.settings`);
:mod:`sliceai.controller.launcher` runs the app.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _ports(text: str) -> tuple[int, ...]:
    try:
        ports = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--core-ports: expected e.g. '1' or '1,2', got {text!r}"
        ) from None
    if not ports:
        raise argparse.ArgumentTypeError("--core-ports: name at least one port")
    return ports


def _metadata(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--metadata: expected KEY=VALUE, got {text!r}")
    return key.lower(), value


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", type=Path, required=True, help="slice policy YAML")
    p.add_argument(
        "--optimizer",
        metavar="HOST:PORT",
        help="sliceai service (ControllerService); without it the guarantees-only plan runs",
    )
    p.add_argument(
        "--ofp-listen",
        metavar="HOST:PORT",
        default="127.0.0.1:6653",
        help="OpenFlow listen address (default 127.0.0.1:6653)",
    )
    p.add_argument(
        "--core-ports",
        type=_ports,
        default=(1,),
        help="OpenFlow port numbers facing the core, comma-separated: traffic entering there is "
        "downlink, from other ports uplink (default 1)",
    )
    p.add_argument(
        "--fallback-after",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="with the service unreachable, keep its last plan this long, then enforce the "
        "guarantees-only plan (default 30)",
    )
    p.add_argument(
        "--poll-interval", type=float, default=1.0, metavar="SECONDS", help="counter polling period"
    )
    p.add_argument(
        "--burst",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="meter burst, seconds of rate (0.5: less starves TCP)",
    )
    p.add_argument(
        "--stats-file", type=Path, help="write state and per-slice rates here as JSON each poll"
    )
    p.add_argument(
        "--reconnect-max",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="longest wait between reconnect attempts (backoff from 0.5 s doubles up to it)",
    )
    p.add_argument("--source-id", default="osken-1", help="telemetry source name sent in Hello")
    p.add_argument("--tls-ca", help="CA certificate (PEM) to verify the service: TLS")
    p.add_argument("--tls-cert", help="client certificate (PEM) for mutual TLS")
    p.add_argument("--tls-key", help="client key (PEM) for mutual TLS")
    p.add_argument(
        "--metadata",
        type=_metadata,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra gRPC call metadata (repeatable), e.g. an authorization token",
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def build_parser() -> argparse.ArgumentParser:
    """The option parser alone (used for ``SLICEAI_CONTROLLER_ARGS`` under ryu-manager)."""
    p = argparse.ArgumentParser(prog="sliceai controller")
    _add_arguments(p)
    return p


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "controller",
        help="run the OpenFlow controller plugin (os-ken) that enforces plans as meters",
        description="Run the os-ken app: connects switches (OpenFlow 1.3), streams telemetry to "
        "the sliceai service and enforces its plans as meters.",
    )
    _add_arguments(p)
    p.set_defaults(handler="sliceai.controller.launcher:run")
