"""``sliceai client ACTION``: watch plans, push a CSV trace, request / release bandwidth."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

from sliceai.policy.units import format_rate, parse_rate


def register_client(subparsers: Any) -> None:
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
    watch.set_defaults(func=_watch)

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
    push.add_argument("--interval", help="trace interval, e.g. 1s (default: from the timestamps)")
    push.set_defaults(func=_push)

    req = sub.add_parser("request", help="request a bandwidth grant (ETSI MEC 015 BwInfo)")
    req.add_argument("--app", required=True, help="appInsId")
    req.add_argument("--slice", required=True, help="slice name or S-NSSAI")
    req.add_argument("--rate", required=True, help="fixed allocation, e.g. '5 Mbps'")
    req.add_argument("--direction", choices=("dl", "ul", "both"), default="both")
    req.add_argument("--priority", type=int, default=0)
    req.set_defaults(func=_request)

    rel = sub.add_parser("release", help="release a grant")
    rel.add_argument("allocation_id")
    rel.set_defaults(func=_release)

    ls = sub.add_parser("list", help="list grants")
    ls.add_argument("--app", default="", help="only this appInsId")
    ls.set_defaults(func=_list)

    pol = sub.add_parser("policy", help="get or apply the running policy")
    pol.add_argument("action", choices=("get", "apply", "check"))
    pol.add_argument("file", nargs="?", type=Path, help="policy YAML for apply / check")
    pol.set_defaults(func=_policy)

    health = sub.add_parser("health", help="print the server's health status")
    health.set_defaults(func=_health)


def _client(args: argparse.Namespace) -> Any:
    from sliceai.api.client import SliceaiClient

    return SliceaiClient(args.target, args.ca, args.cert, args.key, args.server_name)


def _fail(exc: Any) -> int:
    print(f"sliceai client: {exc.code().name}: {exc.details()}", file=sys.stderr)
    return 1


def _rate(x: float) -> str:
    """Three significant digits: '1.23 Mbps'."""
    if math.isnan(x):
        return "-"
    for unit, scale in (("Gbps", 1e9), ("Mbps", 1e6), ("kbps", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.3g} bps"


def format_plan(plan: Any) -> str:
    from sliceai.v1 import common_pb2

    mode = common_pb2.PlanMode.Name(plan.mode).removeprefix("PLAN_MODE_").lower()
    head = f"plan {plan.version} (policy v{plan.policy_version}, {mode}, {plan.compute_ms:.1f} ms)"
    if plan.explanation:
        head += f": {plan.explanation}"
    lines = [head]
    for s in plan.slices:
        flag = " stale" if s.stale else ""
        lines.append(
            f"  {s.slice:<20} alloc {_rate(s.dl_bps):>11} / {_rate(s.ul_bps):<11}"
            f" demand {_rate(s.measured_dl_bps):>11} / {_rate(s.measured_ul_bps):<11}"
            f" forecast {_rate(s.forecast_dl_bps):>11} / {_rate(s.forecast_ul_bps):<11}{flag}"
        )
    return "\n".join(lines)


def _watch(args: argparse.Namespace) -> int:
    import grpc

    with _client(args) as client:
        stream = client.watch(args.slices)
        n = 0
        try:
            for plan in stream:
                print(format_plan(plan), flush=True)
                n += 1
                if args.count and n >= args.count:
                    stream.cancel()
                    break
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                return _fail(exc)
        except KeyboardInterrupt:
            stream.cancel()
    return 0


def _push(args: argparse.Namespace) -> int:
    import grpc
    from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

    from sliceai.cli import UsageError
    from sliceai.traffic import TraceError
    from sliceai.traffic.longcsv import read_long_csv

    if args.speed <= 0:
        raise UsageError("--speed must be positive")
    interval = None
    if args.interval is not None:
        from sliceai.api.commands import _interval

        interval = _interval(args.interval)
    with _client(args) as client:
        stream = client.connect(args.source_id, software="sliceai client push")
        sent = 0
        try:
            with tqdm(desc="intervals", unit="iv", disable=not sys.stderr.isatty()) as bar:
                for chunk in read_long_csv(args.trace, interval_s=interval):
                    pace = chunk.interval_s / args.speed
                    names = list(chunk.slices)
                    for row in chunk.load_bps:
                        t0 = time.monotonic()
                        keep = ~(_isnan(row[:, 0]) & _isnan(row[:, 1]))
                        stream.send_rates(
                            [n for n, k in zip(names, keep, strict=True) if k],
                            [0.0 if math.isnan(v) else float(v) for v in row[keep, 0]],
                            [0.0 if math.isnan(v) else float(v) for v in row[keep, 1]],
                            period_s=chunk.interval_s,
                        )
                        sent += 1
                        bar.update()
                        if args.limit and sent >= args.limit:
                            raise StopIteration
                        time.sleep(max(0.0, pace - (time.monotonic() - t0)))
        except StopIteration:
            pass
        except TraceError as exc:
            raise UsageError(str(exc)) from None
        finally:
            stream.close()
        try:
            for _ in stream:  # drain until the server ends the stream (it reports bad batches here)
                pass
        except grpc.RpcError as exc:
            return _fail(exc)
    print(f"pushed {sent} intervals as source {args.source_id!r}", file=sys.stderr)
    return 0


def _isnan(x: Any) -> Any:
    import numpy as np

    return np.isnan(x)


def _request(args: argparse.Namespace) -> int:
    import grpc

    from sliceai.cli import UsageError

    try:
        bps = parse_rate(args.rate)
    except ValueError as exc:
        raise UsageError(f"--rate: {exc}") from None
    with _client(args) as client:
        try:
            g = client.request_bandwidth(
                args.app, args.slice, bps, args.direction, priority=args.priority
            )
        except grpc.RpcError as exc:
            return _fail(exc)
    print(g.allocation_id)
    return 0


def _release(args: argparse.Namespace) -> int:
    import grpc

    with _client(args) as client:
        try:
            client.release_bandwidth(args.allocation_id)
        except grpc.RpcError as exc:
            return _fail(exc)
    return 0


def _list(args: argparse.Namespace) -> int:
    import grpc

    from sliceai.api.convert import DIRECTION_FROM_PROTO

    with _client(args) as client:
        try:
            grants = client.list_bandwidth(args.app)
        except grpc.RpcError as exc:
            return _fail(exc)
    for g in grants:
        info = g.bw_info
        direction = DIRECTION_FROM_PROTO.get(info.allocation_direction, "?")
        print(
            f"{g.allocation_id}  {info.app_ins_id}  {info.slice}  "
            f"{format_rate(info.fixed_allocation_bps)} {direction}"
        )
    return 0


def _policy(args: argparse.Namespace) -> int:
    import grpc

    from sliceai.cli import UsageError

    with _client(args) as client:
        try:
            if args.action == "get":
                v = client.get_policy()
                print(f"# version {v.version} ({v.name}), by {v.applied_by}, sha256 {v.sha256}")
                print(v.yaml, end="" if v.yaml.endswith("\n") else "\n")
                return 0
            if args.file is None:
                raise UsageError(f"policy {args.action} needs a FILE")
            try:
                text = args.file.read_text(encoding="utf-8")
            except OSError as exc:
                raise UsageError(f"{args.file}: {exc.strerror}") from None
            v = client.apply_policy(text, dry_run=args.action == "check")
        except grpc.RpcError as exc:
            return _fail(exc)
    print(f"{'valid' if args.action == 'check' else 'applied'}: version {v.version} ({v.name})")
    return 0


def _health(args: argparse.Namespace) -> int:
    import grpc

    with _client(args) as client:
        try:
            status = client.health()
        except grpc.RpcError as exc:
            return _fail(exc)
    print(status)
    return 0 if status == "SERVING" else 1
