"""``sliceai client ACTION``: watch plans, push a CSV trace, request / release bandwidth.

The options are in :mod:`sliceai.api.commands`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any

import grpc
import numpy as np
from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

from sliceai.api.client import SliceaiClient
from sliceai.api.convert import DIRECTION_FROM_PROTO, plan_rrm_policy
from sliceai.policy import Policy, PolicyError, load_policy, loads_policy
from sliceai.policy.a1 import parse_plmn
from sliceai.policy.units import UnitError, format_rate, parse_rate
from sliceai.traffic import TraceError
from sliceai.traffic.longcsv import read_long_csv
from sliceai.usage import UsageError
from sliceai.v1 import common_pb2


def _client(args: argparse.Namespace) -> Any:
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


class _RrmRenderer:
    """``watch --format rrm-policy``: each plan as a JSON line of RRMPolicyRatio objects.

    The policy (maxima, priorities, S-NSSAIs, the cell's link) is ``--policy`` or, without
    it, fetched with GetPolicy again whenever a plan names another policy version."""

    def __init__(self, args: argparse.Namespace, client: Any) -> None:
        self.client = client
        self.link = args.link
        self.resource = args.resource_type
        try:
            self.plmn = parse_plmn(args.plmn)
            self.capacity = None if args.cell_capacity is None else parse_rate(args.cell_capacity)
        except (ValueError, UnitError) as exc:
            raise UsageError(str(exc)) from None
        self.policy: Policy | None = None
        self.version = -1
        self.fixed = args.policy is not None
        if args.policy is not None:
            try:
                self.policy = load_policy(args.policy)
            except PolicyError as exc:
                raise UsageError(str(exc)) from None
        self._check(self.policy)

    def _check(self, policy: Policy | None) -> None:
        if policy is not None and self.link is not None and self.link not in policy.link_names:
            raise UsageError(
                f"--link {self.link!r}: the policy's links are {', '.join(policy.link_names)}"
            )

    def __call__(self, plan: Any) -> str:
        if not self.fixed and plan.policy_version != self.version:
            try:
                v = self.client.get_policy()
            except grpc.RpcError as exc:
                raise UsageError(
                    f"cannot fetch the policy ({exc.code().name}: {exc.details()}); "
                    "give it with --policy"
                ) from None
            self.policy = loads_policy(v.yaml, f"policy version {v.version}")
            self.version = v.version
            self._check(self.policy)
        assert self.policy is not None
        doc = plan_rrm_policy(
            plan,
            self.policy,
            link=self.link,
            capacity_bps=self.capacity,
            resource=self.resource,
            plmn=self.plmn,
        )
        return json.dumps(doc, separators=(",", ":"))


def watch(args: argparse.Namespace) -> int:
    """``sliceai client watch``: print plans as they arrive (text, or RRMPolicyRatio JSON lines)."""
    with _client(args) as client:
        render = format_plan if args.format == "text" else _RrmRenderer(args, client)
        stream = client.watch(args.slices)
        n = 0
        try:
            for plan in stream:
                print(render(plan), flush=True)
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


def push(args: argparse.Namespace) -> int:
    """``sliceai client push TRACE``: play a long CSV trace as live telemetry."""
    if args.speed <= 0:
        raise UsageError("--speed must be positive")
    with _client(args) as client:
        stream = client.connect(args.source_id, software="sliceai client push")
        sent = 0
        try:
            with tqdm(desc="intervals", unit="iv", disable=not sys.stderr.isatty()) as bar:
                for chunk in read_long_csv(args.trace, interval_s=args.interval):
                    pace = chunk.interval_s / args.speed
                    names = list(chunk.slices)
                    for row in chunk.load_bps:
                        t0 = time.monotonic()
                        keep = ~(np.isnan(row[:, 0]) & np.isnan(row[:, 1]))
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


def request(args: argparse.Namespace) -> int:
    """``sliceai client request``: request a bandwidth grant; prints its id."""
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


def release(args: argparse.Namespace) -> int:
    """``sliceai client release ID``: release a grant."""
    with _client(args) as client:
        try:
            client.release_bandwidth(args.allocation_id)
        except grpc.RpcError as exc:
            return _fail(exc)
    return 0


def list_grants(args: argparse.Namespace) -> int:
    """``sliceai client list``: the grants, one a line."""
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


def policy_action(args: argparse.Namespace) -> int:
    """``sliceai client policy get|apply|check``."""
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


def health(args: argparse.Namespace) -> int:
    """``sliceai client health``: 0 when the server is SERVING."""
    with _client(args) as client:
        try:
            status = client.health()
        except grpc.RpcError as exc:
            return _fail(exc)
    print(status)
    return 0 if status == "SERVING" else 1
