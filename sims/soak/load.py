"""The soak's two sides: hostile load (issue #29's cases 2, 3, 4 and 8, scaled) and one
honest controller whose plans, decision times and round trips are what the soak reports.

The hostile side runs in one asyncio loop (grpc.aio) in a process of its own, so thousands
of stream attempts cost no thread each. It stands for callers on other machines, so on the
soak's one machine that whole process runs at the lowest priority (``nice``, 19 by default,
set before it loads gRPC: gRPC's own threads, which do its TLS and HTTP/2 work, inherit it;
when only the asyncio thread was lowered they ran at the soak's priority and took CPU from
the server's planner). It takes idle CPU, not the server's (its attempts per second are
reported; with ``nice=0`` it competes with the server as an equal):

- ``forecast``: 4 x scale callers asking ``GetForecast`` for ~85,000 slices (500 KB)
  at once, again and again (case 2);
- ``watch``: 64 x scale watch streams held by one app, read slowly (case 3);
- ``hello``: 96 x scale ``Connect`` calls that never send their Hello (case 3);
- ``sources``: ``PushTelemetry`` under ever new source ids (case 4);
- ``grants``: request / release loops as fast as the server answers (case 8).

Every refusal is expected; what counts is that the honest controller keeps getting plans.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import multiprocessing
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from sims.pki import Pki
from sliceai.api.client import SliceaiClient
from sliceai.api.server import lower_priority
from sliceai.v1 import controller_pb2_grpc, mec_pb2, mec_pb2_grpc

#: The URI SAN (identity) of each soak certificate.
IDENTITIES: dict[str, str | None] = {
    "honest": "spiffe://sliceai/controller/honest-1",
    "evil-ctl": "spiffe://sliceai/controller/evil-ctl",
    "evil-app": "spiffe://sliceai/mec-app/evil-app",
    "evil-watch": "spiffe://sliceai/mec-app/evil-watch",
}


def _creds(pki: Pki, name: str) -> grpc.ChannelCredentials:
    cert, key = pki.client(name)
    return grpc.ssl_channel_credentials(
        root_certificates=pki.ca.read_bytes(),
        private_key=key.read_bytes(),
        certificate_chain=cert.read_bytes(),
    )


def _drive(
    target: str, pki: Pki, scale: float, slices: tuple[str, ...], nice: int, conn: Connection
) -> None:
    """The driver process: lowered first, then the callers until the soak says stop."""
    lower_priority(nice)  # the main thread: every thread started later inherits it
    hostile = Hostile(target, pki, scale, slices, nice)

    def wait_for_stop() -> None:
        with contextlib.suppress(EOFError, OSError):  # the soak is gone: stop too
            conn.recv()
        hostile._stop.set()

    conn.send("ready")
    threading.Thread(target=wait_for_stop, daemon=True).start()
    asyncio.run(hostile._main())
    conn.send((dict(hostile.attempts), dict(hostile.codes)))


def client(target: str, pki: Pki, name: str, timeout_s: float = 10.0) -> SliceaiClient:
    cert, key = pki.client(name)
    return SliceaiClient(
        target, ca=pki.ca, cert=cert, key=key, server_name="localhost", timeout_s=timeout_s
    )


@dataclass
class Hostile:
    """Counts of what the hostile callers tried, by case, and the status codes they got
    (filled in by :meth:`stop`: the callers run in a child process, module docstring)."""

    target: str
    pki: Pki
    scale: float
    slices: tuple[str, ...]
    nice: int = 19  # the driver process's nice increment (callers on other machines)
    attempts: collections.Counter[str] = field(default_factory=collections.Counter)
    codes: collections.Counter[str] = field(default_factory=collections.Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _proc: multiprocessing.process.BaseProcess | None = None
    _conn: Connection | None = None

    def start(self) -> None:
        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing inherited
        self._conn, theirs = ctx.Pipe()
        args = (self.target, self.pki, self.scale, self.slices, self.nice, theirs)
        self._proc = ctx.Process(target=_drive, args=args, name="soak-hostile")
        self._proc.start()
        theirs.close()
        if not self._conn.poll(120) or self._conn.recv() != "ready":  # gRPC loaded there
            raise RuntimeError("the hostile driver process did not start")

    def stop(self) -> None:
        """Stop the callers and collect their counts."""
        if self._proc is None or self._conn is None:
            return
        self._conn.send("stop")
        if self._conn.poll(60):
            attempts, codes = self._conn.recv()
            self.attempts.update(attempts)
            self.codes.update(codes)
        self._proc.join(30)
        if self._proc.is_alive():
            self._proc.kill()
        self._conn.close()
        self._proc = self._conn = None

    def _n(self, base: int) -> int:
        return max(1, round(base * self.scale))

    def _count(self, case: str, exc: BaseException | None) -> None:
        self.attempts[case] += 1
        code = (
            exc.code().name
            if isinstance(exc, grpc.RpcError)
            else "OK"
            if exc is None
            else type(exc).__name__
        )
        self.codes[f"{case}:{code}"] += 1

    async def _main(self) -> None:
        opts = [("grpc.ssl_target_name_override", "localhost")]
        app = grpc.aio.secure_channel(self.target, _creds(self.pki, "evil-app"), opts)
        watch = grpc.aio.secure_channel(self.target, _creds(self.pki, "evil-watch"), opts)
        ctl = grpc.aio.secure_channel(self.target, _creds(self.pki, "evil-ctl"), opts)
        tasks = [asyncio.create_task(self._forecast(app)) for _ in range(self._n(4))]
        tasks += [asyncio.create_task(self._watch(watch)) for _ in range(self._n(64))]
        tasks += [asyncio.create_task(self._hello(ctl)) for _ in range(self._n(96))]
        tasks += [asyncio.create_task(self._sources(ctl, k)) for k in range(4)]
        tasks += [asyncio.create_task(self._grants(app, k)) for k in range(4)]
        while not self._stop.is_set():
            await asyncio.sleep(0.1)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for ch in (app, watch, ctl):
            await ch.close(None)

    async def _forecast(self, channel: grpc.aio.Channel) -> None:
        stub = mec_pb2_grpc.MecServiceStub(channel)  # type: ignore[no-untyped-call]
        request = mec_pb2.ForecastRequest(slices=[self.slices[0]] * 85_000, horizon=64)
        while not self._stop.is_set():
            try:
                await stub.GetForecast(request, timeout=30)
                self._count("forecast", None)
            except grpc.RpcError as exc:
                self._count("forecast", exc)
                await asyncio.sleep(0.01)

    async def _watch(self, channel: grpc.aio.Channel) -> None:
        stub = mec_pb2_grpc.MecServiceStub(channel)  # type: ignore[no-untyped-call]
        while not self._stop.is_set():
            call = stub.WatchAllocations(mec_pb2.WatchAllocationsRequest())
            try:
                while not self._stop.is_set():
                    await call.read()  # a slow watcher: one plan every few seconds
                    await asyncio.sleep(3.0)
                self._count("watch", None)
            except grpc.RpcError as exc:
                self._count("watch", exc)
                await asyncio.sleep(0.05)
            finally:
                call.cancel()

    async def _hello(self, channel: grpc.aio.Channel) -> None:
        stub = controller_pb2_grpc.ControllerServiceStub(channel)  # type: ignore[no-untyped-call]
        while not self._stop.is_set():
            call = stub.Connect()  # and never a Hello
            try:
                await call.read()
                self._count("hello", None)
            except grpc.RpcError as exc:
                self._count("hello", exc)
                await asyncio.sleep(0.05)
            finally:
                call.cancel()

    async def _sources(self, channel: grpc.aio.Channel, k: int) -> None:
        stub = mec_pb2_grpc.MecServiceStub(channel)  # type: ignore[no-untyped-call]
        i = 0
        while not self._stop.is_set():
            i += 1
            report = mec_pb2.KpmReport(
                source_id=f"evil-{k}-{i}",
                timestamp_unix_s=time.time(),
                granularity_period_s=1.0,
                records=[mec_pb2.KpmRecord(name="DRB.UEThpDl", slice=self.slices[0], value=1.0)],
            )
            try:
                await stub.PushTelemetry(report, timeout=10)
                self._count("sources", None)
            except grpc.RpcError as exc:
                self._count("sources", exc)
                await asyncio.sleep(0.005)

    async def _grants(self, channel: grpc.aio.Channel, k: int) -> None:
        stub = mec_pb2_grpc.MecServiceStub(channel)  # type: ignore[no-untyped-call]
        info = mec_pb2.BwInfo(
            app_ins_id="evil-app",
            request_type=mec_pb2.REQUEST_TYPE_APPLICATION_SPECIFIC,
            slice=self.slices[1 + k % (len(self.slices) - 1)],
            fixed_allocation_bps=1000,
            allocation_direction=mec_pb2.ALLOCATION_DIRECTION_DOWNLINK,
        )
        while not self._stop.is_set():
            try:
                grant = await stub.RequestBandwidth(info, timeout=10)
                await stub.ReleaseBandwidth(
                    mec_pb2.ReleaseBandwidthRequest(allocation_id=grant.allocation_id), timeout=10
                )
                self._count("grants", None)
            except grpc.RpcError as exc:
                self._count("grants", exc)
                await asyncio.sleep(0.01)


@dataclass
class Honest:
    """One controller that reports every slice each ``period_s`` and counts the plans it gets."""

    target: str
    pki: Pki
    slices: tuple[str, ...]
    period_s: float
    plan_times: list[float] = field(default_factory=list)  # monotonic s of each plan received
    compute_ms: list[float] = field(default_factory=list)
    round_trip_s: list[float] = field(default_factory=list)  # batch sent -> next plan
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _sent: float | None = None

    def start(self) -> None:
        self._client = client(self.target, self.pki, "honest")
        self._stream = self._client.connect("honest-1", slice_table=self.slices)
        self._threads = [
            threading.Thread(target=self._send, daemon=True),
            threading.Thread(target=self._read, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        self._stream.cancel()
        for t in self._threads:
            t.join(10)
        self._client.close()

    def _send(self) -> None:
        n = len(self.slices)
        ids = list(range(n))
        rng = np.random.default_rng(1)
        while not self._stop.wait(self.period_s):
            dl = (20e6 * (1 + 0.3 * rng.standard_normal(n))).clip(0).tolist()
            self._sent = time.monotonic()
            self._stream.send_ids(ids, dl, [r / 4 for r in dl])

    def _read(self) -> None:
        try:
            for msg in self._stream:
                if msg.WhichOneof("kind") != "plan":
                    continue
                now = time.monotonic()
                self.plan_times.append(now)
                self.compute_ms.append(msg.plan.compute_ms)
                if self._sent is not None:
                    self.round_trip_s.append(now - self._sent)
                    self._sent = None
        except grpc.RpcError as exc:
            if not self._stop.is_set():
                self.errors.append(f"{exc.code().name}: {exc.details()}")

    def plans_per_s(self, since: float, until: float) -> float:
        got = sum(1 for t in self.plan_times if since <= t <= until)
        return got / max(until - since, 1e-9)

    def longest_gap_s(self) -> float:
        t = self.plan_times
        return max((b - a for a, b in itertools.pairwise(t)), default=float("inf"))


def p99(values: list[float]) -> float:
    return float(np.percentile(values, 99)) if values else float("nan")


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def rss_mb(pid: int) -> float:
    """Resident set size of process ``pid`` and its children (the planner process, and
    multiprocessing's resource tracker), MB (Linux /proc)."""
    total = 0.0
    for p in (pid, *_children(pid)):
        try:
            lines = Path(f"/proc/{p}/status").read_text().splitlines()
        except OSError:
            continue
        total += sum(int(x.split()[1]) / 1024 for x in lines if x.startswith("VmRSS:"))
    return total


def summary(honest: Honest, hostile: Hostile, since: float, until: float) -> dict[str, Any]:
    return {
        "plans_per_s": honest.plans_per_s(since, until),
        "longest_plan_gap_s": honest.longest_gap_s(),
        "decision_p99_ms": p99(honest.compute_ms),
        "round_trip_p99_ms": 1000 * p99(honest.round_trip_s),
        "honest_errors": list(honest.errors),
        "hostile_attempts": dict(hostile.attempts),
        "hostile_codes": dict(hostile.codes),
    }
