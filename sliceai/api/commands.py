"""``sliceai serve`` (the gRPC service) and ``sliceai client`` (talk to one): their options.

The handlers are :mod:`sliceai.api.serve_command` and :mod:`sliceai.api.client_commands`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sliceai.policy.units import parse_duration_s


def interval_s(text: str) -> float:
    """``--interval``: a duration (``1s``, ``500ms``; a bare number is seconds), 50 ms .. 15 min."""
    try:
        value = parse_duration_s(text if not text.replace(".", "", 1).isdigit() else f"{text}s")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not 0.05 <= value <= 900:
        raise argparse.ArgumentTypeError(f"{text}: must be 50 ms .. 15 min")
    return value


#: Units of the long durations of ``--adapt-every`` and ``--adapt-min-history``, s.
LONG_DURATION_UNITS_S = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def long_duration_s(text: str) -> float:
    """``--adapt-every``, ``--adapt-min-history``: ``6h``, ``90min``, ``2d``, ``3600s`` or a
    bare number of seconds; positive."""
    body = text.strip()
    unit = next((u for u in ("min", "s", "h", "d") if body.endswith(u)), "")
    try:
        value = float(body[: len(body) - len(unit)]) * LONG_DURATION_UNITS_S.get(unit, 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text}: not a duration (e.g. 6h, 90min, 2d)") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text}: must be positive")
    return value


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="run the live service: telemetry in, allocation plans out (gRPC)",
        description="Run the sliceai gRPC service. Plaintext is allowed on loopback addresses "
        "only; elsewhere give --tls-cert/--tls-key (and --client-ca for mutual TLS with roles).",
    )
    serve.add_argument(
        "--policy", type=Path, help="slice policy YAML (optional when --db holds one)"
    )
    serve.add_argument(
        "--model",
        default="default",
        help="forecast checkpoint directory, 'default' (bundled) or 'empirical' "
        "(rolling quantiles, no torch)",
    )
    serve.add_argument(
        "--device", default="auto", help="torch device for the model: auto, cpu, cuda"
    )
    serve.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="CPU threads for the model (default 1: one interval's forecast is small, and "
        "torch's thread pool competing with the gRPC threads makes decision latency jitter)",
    )
    serve.add_argument(
        "--planner-process",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="forecast and solve each interval in a child process, so that requests "
        "(floods included) cannot delay plans (default on; it loads its own copy of "
        "the model)",
    )
    serve.add_argument(
        "--planner-nice",
        type=int,
        default=None,
        metavar="N",
        help="the planner process's nice value, -20..19 (default: this process's); below 0 "
        "needs root or CAP_SYS_NICE (e.g. systemd's Nice=), else it stays and a warning says "
        "so; make soak uses -10: under a request flood the plans' CPU then comes first",
    )
    serve.add_argument(
        "--request-nice",
        type=int,
        default=0,
        metavar="N",
        help="run RPC handlers N nice levels lower (and, with the planner process, this "
        "process 5 lower), so request floods cannot delay plans; on a shared host other "
        "work then comes before requests (default 0; make soak uses 10)",
    )
    serve.add_argument(
        "--listen", default="127.0.0.1:50051", help="HOST:PORT (port 0 = any free port)"
    )
    serve.add_argument(
        "--interval",
        type=interval_s,
        default="1s",
        help="control interval, e.g. 1s, 500ms (default 1s)",
    )
    serve.add_argument(
        "--db",
        type=Path,
        help="SQLite state file (grants, policies); default $SLICEAI_DB, else "
        "$XDG_STATE_HOME/sliceai/sliceai.db (~/.local/state/sliceai/sliceai.db)",
    )
    serve.add_argument("--tls-cert", type=Path, help="server certificate chain (PEM)")
    serve.add_argument("--tls-key", type=Path, help="server private key (PEM)")
    serve.add_argument(
        "--client-ca", type=Path, help="CA for client certificates: turns on mutual TLS"
    )
    serve.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="accept callers without a valid identity (a client certificate without one "
        "spiffe://sliceai/<role>/<id> URI SAN, or server-only TLS off loopback) as read-only "
        "anonymous: forecasts and plan watching (default: refused, UNAUTHENTICATED)",
    )
    serve.add_argument(
        "--rest",
        metavar="HOST:PORT",
        help="also serve the ETSI MEC 015 Bandwidth Management API (REST, /bwm/v1) here, on "
        "the same engine, TLS files and roles (needs the extra: pip install 'sliceai[rest]')",
    )
    serve.add_argument(
        "--metrics-port", type=int, help="serve Prometheus /metrics on this port (0 = any)"
    )
    serve.add_argument(
        "--metrics-addr",
        default="127.0.0.1",
        help="address for /metrics (default 127.0.0.1; any other address needs "
        "--tls-cert/--tls-key, and with --client-ca the scraper's certificate)",
    )
    serve.add_argument(
        "--simulate",
        nargs="?",
        const="auto",
        metavar="SCENARIO",
        help="play a bundled traffic scenario as telemetry (default: the policy's name or campus)",
    )
    serve.add_argument(
        "--rate-limit", type=float, default=2000.0, help="messages per second per client"
    )
    serve.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="change one per-caller limit (repeatable), e.g. streams_per_identity=4, "
        "forecast_slices=16, source_expiry_s=30; the names and defaults are "
        "sliceai.engine.limits.Limits (docs/contracts.md)",
    )
    serve.add_argument(
        "--adapt",
        action="store_true",
        help="record the telemetry planned from (in --db, 14 days) and every --adapt-every "
        "fine-tune the model on it; the fine-tuned model takes over only when it forecasts "
        "the most recent, held-back telemetry better (sliceai.api.adapt)",
    )
    serve.add_argument(
        "--adapt-every",
        type=long_duration_s,
        default="6h",
        metavar="DURATION",
        help="time between adaptation rounds, e.g. 6h, 90min, 1d (default 6h)",
    )
    serve.add_argument(
        "--adapt-min-history",
        type=long_duration_s,
        default="1d",
        metavar="DURATION",
        help="recorded telemetry needed before the first fine-tune (default 1d)",
    )
    serve.add_argument(
        "--adapt-minutes",
        type=float,
        default=10.0,
        help="wall-time budget of one fine-tune, minutes (default 10)",
    )
    serve.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    serve.set_defaults(handler="sliceai.api.serve_command:run")

    client = subparsers.add_parser(
        "client",
        help="talk to a running sliceai service",
        description="Talk to a running `sliceai serve`: watch plans, push telemetry, "
        "manage bandwidth grants.",
    )
    client.add_argument(
        "--target", default="127.0.0.1:50051", help="server HOST:PORT (default 127.0.0.1:50051)"
    )
    client.add_argument(
        "--ca", type=Path, help="CA that signed the server certificate (turns on TLS)"
    )
    client.add_argument("--cert", type=Path, help="client certificate (mutual TLS)")
    client.add_argument("--key", type=Path, help="client private key (mutual TLS)")
    client.add_argument("--server-name", help="expected server name, if not the target host")
    sub = client.add_subparsers(dest="client_command", metavar="ACTION", required=True)

    watch = sub.add_parser("watch", help="print plans as they arrive")
    watch.add_argument("--slices", nargs="*", default=[], help="only these slices")
    watch.add_argument(
        "--count", type=int, default=0, help="stop after N plans (0 = until interrupted)"
    )
    watch.add_argument(
        "--format",
        choices=("text", "rrm-policy"),
        default="text",
        help="rrm-policy: each plan as one JSON line of 3GPP TS 28.541 RRMPolicyRatio objects "
        "(integer percent of the cell's capacity; see sliceai/solver/rrm.py)",
    )
    rrm = watch.add_argument_group("rrm-policy")
    rrm.add_argument(
        "--policy", type=Path, help="the policy YAML (default: fetched with GetPolicy)"
    )
    rrm.add_argument("--link", help="the cell's link (default: the topology's first)")
    rrm.add_argument("--cell-capacity", metavar="RATE", help="cell capacity (default: the link's)")
    rrm.add_argument(
        "--resource-type",
        choices=("PRB", "PRB_DL", "PRB_UL"),
        default="PRB",
        help="PRB (DL figures), PRB_DL or PRB_UL (default PRB)",
    )
    rrm.add_argument("--plmn", default="001-01", help="MCC-MNC of the members (default 001-01)")
    watch.set_defaults(handler="sliceai.api.client_commands:watch")

    push = sub.add_parser(
        "push", help="play a long CSV trace (timestamp,slice,direction,bps) as live telemetry"
    )
    push.add_argument("trace", type=Path)
    push.add_argument("--source-id", default="csv-push", help="telemetry source name")
    push.add_argument(
        "--speed", type=float, default=1.0, help="play N times faster than the trace interval"
    )
    push.add_argument(
        "--limit", type=int, default=0, help="stop after N intervals (0 = whole trace)"
    )
    push.add_argument(
        "--interval",
        type=interval_s,
        help="trace interval, e.g. 1s (default: from the timestamps)",
    )
    push.set_defaults(handler="sliceai.api.client_commands:push")

    req = sub.add_parser("request", help="request a bandwidth grant (ETSI MEC 015 BwInfo)")
    req.add_argument("--app", required=True, help="appInsId")
    req.add_argument("--slice", required=True, help="slice name or S-NSSAI")
    req.add_argument("--rate", required=True, help="fixed allocation, e.g. '5 Mbps'")
    req.add_argument("--direction", choices=("dl", "ul", "both"), default="both")
    req.add_argument("--priority", type=int, default=0)
    req.set_defaults(handler="sliceai.api.client_commands:request")

    rel = sub.add_parser("release", help="release a grant")
    rel.add_argument("allocation_id")
    rel.set_defaults(handler="sliceai.api.client_commands:release")

    ls = sub.add_parser("list", help="list grants")
    ls.add_argument("--app", default="", help="only this appInsId")
    ls.set_defaults(handler="sliceai.api.client_commands:list_grants")

    pol = sub.add_parser("policy", help="get or apply the running policy")
    pol.add_argument("action", choices=("get", "apply", "check"))
    pol.add_argument("file", nargs="?", type=Path, help="policy YAML for apply / check")
    pol.set_defaults(handler="sliceai.api.client_commands:policy_action")

    health = sub.add_parser("health", help="print the server's health status")
    health.set_defaults(handler="sliceai.api.client_commands:health")
