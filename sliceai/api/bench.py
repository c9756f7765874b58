"""Benchmark ``service``: telemetry ingest throughput and decision latency on loopback.

Ingest: a client process (its own interpreter, so client and server do not
share a GIL) opens 1 or 32 ControllerService.Connect streams and sends
pre-serialised telemetry batches of 256 slices (named by index into the
stream's Hello.slice_table, as a controller plugin should) as fast as gRPC
takes them;
the figure is slice-samples per second until the server has processed the
last batch of every stream. The peer is a bare gRPC server on the same port
setup that parses the same messages and does nothing else (a sink), measured
in the same run: ``ratio`` is the share of bare gRPC throughput kept.

Decision latency: one controller stream on a 64-slice policy sends one
end-of-period batch per interval; the figure is the time from sending that
batch to receiving the plan computed from it (forecast + solve + publish +
wire), p99 over the intervals.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from sliceai.api.client import SliceaiClient
from sliceai.api.server import ServerSettings, SliceaiServer
from sliceai.bench import Figure, percentile
from sliceai.engine import Engine, EngineSettings, StateStore
from sliceai.engine.planner_process import LoadedForecaster, PlannerProcess
from sliceai.planning import RollingQuantileForecaster
from sliceai.plugins import load
from sliceai.v1 import common_pb2, controller_pb2

BENCH = "service"
INGEST_SLICES = 256
LATENCY_SLICES = 64
#: Slice counts of the "how many slices one instance keeps" rows (1 s interval).
SCALE_SLICES = (128, 256, 512)
CONNECT = "/sliceai.v1.ControllerService/Connect"

_CLIENT = r"""
import json, sys, threading, time
import grpc
from sliceai.v1 import controller_pb2 as c
target = sys.argv[1]
streams, per_stream, n_slices = (int(a) for a in sys.argv[2:5])
names = [f"s{i:03d}" for i in range(n_slices)]
now = time.time()
batches = [
    c.ControllerMessage(telemetry=c.TelemetryBatch(
        datapath_id=1, timestamp_unix_s=now, period_s=1.0, slice_ids=range(n_slices),
        dl_bps=[1e6 + 7 * k + i for i in range(n_slices)],
        ul_bps=[5e5 + i for i in range(n_slices)],
        end_of_period=False)).SerializeToString()
    for k in range(16)
]
channels = [grpc.insecure_channel(target) for _ in range(min(streams, 8))]
for ch in channels:
    grpc.channel_ready_future(ch).result(timeout=30)
def run(i, out):
    call = channels[i % len(channels)].stream_stream(CONNECT)
    hello = c.Hello(source_id=f"bench-{i}", slice_table=names)
    hello = c.ControllerMessage(hello=hello).SerializeToString()
    def requests():
        yield hello
        for k in range(per_stream):
            yield batches[k % 16]
    for _ in call(requests()):
        pass
    out[i] = True
done = [False] * streams
threads = [threading.Thread(target=run, args=(i, done)) for i in range(streams)]
t0 = time.perf_counter()
for t in threads: t.start()
for t in threads: t.join()
elapsed = time.perf_counter() - t0
print(json.dumps({"elapsed": elapsed, "ok": all(done)}))
""".replace("CONNECT", repr(CONNECT))


def synthetic_policy(n_slices: int, n_links: int = 4) -> str:
    """Policy YAML: ``n_slices`` eMBB slices ``s000..`` over ``n_links`` links of 10 Gbit/s."""
    lines = [f"name: bench-{n_slices}", "slices:"]
    for i in range(n_slices):
        lines += [
            f"  - name: s{i:03d}",
            f'    snssai: {{sst: 1, sd: "{i + 1:06X}"}}',
            "    five_qi: 9",
            "    guaranteed: {dl: 1 Mbps, ul: 1 Mbps}",
            "    maximum: {dl: 200 Mbps, ul: 200 Mbps}",
            "    risk: 0.01",
            f"    match: [{{protocol: udp, ports: [{10000 + i}]}}]",
        ]
    lines += ["topology:", "  links:"]
    per = -(-n_slices // n_links)
    for li in range(n_links):
        members = ", ".join(f"s{i:03d}" for i in range(li * per, min(n_slices, (li + 1) * per)))
        lines += [f"    - name: edge{li}", "      capacity: 10 Gbps", f"      slices: [{members}]"]
    return "\n".join(lines) + "\n"


def _sink_server() -> tuple[grpc.Server, int]:
    def connect(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[bytes]:
        for _ in requests:
            pass
        return
        yield b""  # a generator that ends once the client half-closes

    handler = grpc.method_handlers_generic_handler(
        "sliceai.v1.ControllerService",
        {
            "Connect": grpc.stream_stream_rpc_method_handler(
                connect,
                request_deserializer=controller_pb2.ControllerMessage.FromString,
                response_serializer=lambda b: b,
            )
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=96), maximum_concurrent_rpcs=96)
    server.add_generic_rpc_handlers([handler])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def _our_server(
    policy_text: str,
    db: Path,
    interval_s: float,
    forecaster: Any = None,
    planner_process: PlannerProcess | None = None,
) -> Any:
    engine = Engine(
        StateStore(db),
        policy_text,
        forecaster or RollingQuantileForecaster(),
        settings=EngineSettings(interval_s=interval_s),
        planner_process=planner_process,
    )
    server = SliceaiServer(engine, ServerSettings(listen="127.0.0.1:0", rate_per_s=1e9, burst=1e9))
    server.start()
    return server


def _drive(port: int, streams: int, per_stream: int) -> float:
    """Seconds the client process needed to push every batch through ``streams`` streams."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _CLIENT,
            f"127.0.0.1:{port}",
            str(streams),
            str(per_stream),
            str(INGEST_SLICES),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"bench client failed: {out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if not result["ok"]:
        raise RuntimeError("bench client: a stream did not finish")
    return float(result["elapsed"])


#: Back-to-back runs of our server and the bare sink per ingest figure.
INGEST_REPEATS = 5


def _ingest(streams: int, quick: bool, workdir: Path) -> Figure:
    total = 3000 if quick else 20000  # batches over all streams
    per_stream = max(1, total // streams)
    samples = per_stream * streams * INGEST_SLICES
    repeats = 1 if quick else INGEST_REPEATS
    ours, peer = [], []
    policy_text = synthetic_policy(INGEST_SLICES)
    for r in range(repeats):
        server = _our_server(policy_text, workdir / f"ingest-{streams}-{r}.db", 1.0)
        try:
            ours.append(samples / _drive(server.port, streams, per_stream))
            ingested = server.engine.buffer.sources()
            if len(ingested) < streams:
                raise RuntimeError(f"only {len(ingested)} of {streams} streams reached the engine")
        finally:
            server.stop(0.5)
            server.engine.store.close()
        sink, port = _sink_server()
        try:
            peer.append(samples / _drive(port, streams, per_stream))
        finally:
            sink.stop(0.5).wait()
    # Host noise moves both servers' throughput from run to run: the ratio is the median
    # of the back-to-back pairs' ratios, not the ratio of the two medians.
    ratio = float(np.median(np.array(ours) / np.array(peer)))
    return Figure(
        BENCH,
        f"ingest, {streams} stream{'s' if streams > 1 else ''}",
        "throughput",
        float(np.median(ours)),
        "slice-samples/s",
        "bare grpc sink",
        float(np.median(peer)),
        ratio,
        note=f"{INGEST_SLICES}-slice batches, {per_stream * streams} batches; medians of "
        f"{repeats} runs each, ratio: median of the {repeats} back-to-back pairs' ratios; "
        "target >= 200,000 and ratio >= 0.7",
    )


def _forecaster() -> tuple[Any, Any, str]:
    """The forecaster ``serve`` loads, how its planner process builds the same, and its name."""
    try:
        build = LoadedForecaster(None, device="auto", threads=1)
        return build(), build, "bundled model"
    except Exception:
        fallback = RollingQuantileForecaster
        return fallback(), fallback, "rolling quantiles (bundled model not loadable)"


def _latency(
    quick: bool, workdir: Path, n_slices: int = LATENCY_SLICES, interval_s: float = 0.5
) -> Figure:
    torch = load("torch")  # the model's; loaded late (see sliceai.plugins)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as `sliceai serve --torch-threads` defaults to
    try:
        return _measure_latency(quick, workdir, n_slices, interval_s)
    finally:
        torch.set_num_threads(threads)


def _measure_latency(quick: bool, workdir: Path, n_slices: int, interval_s: float) -> Figure:
    rounds = 30 if quick else (200 if n_slices == LATENCY_SLICES else 40)
    forecaster, build, which = _forecaster()
    db = workdir / f"latency-{n_slices}.db"
    # planned in a planner process, as `sliceai serve` does
    process = PlannerProcess(build)
    server = _our_server(synthetic_policy(n_slices), db, interval_s, forecaster, process)
    server.engine.settings.loop.min_gap_fraction = (
        0.2  # early plans may follow 100 ms after the last
    )
    names = [f"s{i:03d}" for i in range(n_slices)]
    latencies = []
    failsafe = 0
    try:
        with SliceaiClient(f"127.0.0.1:{server.port}") as client:
            stream = client.connect("latency-probe")
            messages = iter(stream)
            next(messages)  # the policy
            pause = max(0.12, 0.2 * interval_s + 0.05)  # past the early-plan gap below
            for k in range(rounds + 5):
                time.sleep(pause)
                marker = 1e6 + k
                t0 = time.perf_counter()
                stream.send_rates(names, [marker] * n_slices, [5e5] * n_slices)
                for msg in messages:
                    if (
                        msg.WhichOneof("kind") == "plan"
                        and msg.plan.slices[0].measured_dl_bps == marker
                    ):
                        break
                if k >= 5:  # warm-up intervals are not counted
                    latencies.append((time.perf_counter() - t0) * 1000.0)
                    failsafe += msg.plan.mode != common_pb2.PLAN_MODE_OPTIMIZED
            stream.cancel()
    finally:
        server.stop(0.5)
        server.engine.store.close()
    return Figure(
        BENCH,
        f"decision latency, {n_slices} slices"
        + ("" if n_slices == LATENCY_SLICES else f" at a {interval_s:g} s interval"),
        "p99",
        percentile(latencies, 99),
        "ms",
        note=f"p50 {percentile(latencies, 50):.1f} ms over {rounds} intervals, "
        f"forecaster: {which}, planner process as serve, {failsafe} fail-safe plans; "
        "target <= 50 ms",
    )


def run(quick: bool) -> Iterator[Figure]:
    with tempfile.TemporaryDirectory(prefix="sliceai-bench-") as tmp:
        workdir = Path(tmp)
        yield _ingest(1, quick, workdir)
        yield _ingest(32, quick, workdir)
        yield _latency(quick, workdir)
        # How far one instance goes (docs/deployment.md): the same at a 1 s interval.
        for n_slices in SCALE_SLICES:
            yield _latency(quick, workdir, n_slices, 1.0)
