"""Benchmark ``rest``: MEC 015 POST-to-grant latency on loopback, next to gRPC RequestBandwidth.

One engine on a 64-slice policy serves both the gRPC server and the REST server (the
same admission and SQLite store). Each round posts one BwInfo over REST (httpx,
keep-alive) and sends the same request as gRPC RequestBandwidth, alternating which goes
first; the figure is the time from sending to holding the created allocation (admission
+ durable commit + wire), p99 over the rounds; each grant is released, untimed, so
every round sees the same standing grants. The client runs in the server's process (as
a MEC platform's would not), so both paths pay for sharing one interpreter.
"""

from __future__ import annotations

import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from sliceai.api.bench import LATENCY_SLICES, _our_server, synthetic_policy
from sliceai.api.client import SliceaiClient
from sliceai.api.rest.serve import RestServer
from sliceai.bench import Figure, percentile

BENCH = "rest"
COLLECTION = "/bwm/v1/bw_allocations"
NODELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _rounds(quick: bool, workdir: Path) -> tuple[list[float], list[float]]:
    rounds = 40 if quick else 400
    server = _our_server(synthetic_policy(LATENCY_SLICES), workdir / "rest.db", 1.0)
    rest = RestServer(server.engine, "127.0.0.1:0", limiter=server.auth.limiter)
    rest.start()
    rest_ms: list[float] = []
    grpc_ms: list[float] = []
    try:
        # TCP_NODELAY as curl and gRPC set it: httpx writes headers and body apart, and
        # Nagle would hold the body for the server's delayed ACK (40 ms on Linux).
        transport = httpx.HTTPTransport(socket_options=[NODELAY])
        base = f"http://127.0.0.1:{rest.port}"
        with (
            SliceaiClient(f"127.0.0.1:{server.port}") as g,
            httpx.Client(base_url=base, timeout=30, transport=transport) as r,
        ):
            for k in range(rounds + 10):
                name = f"s{k % LATENCY_SLICES:03d}"
                info: dict[str, object] = {
                    "appInsId": f"bench-{k}",
                    "appName": name,
                    "requestType": 0,
                    "fixedAllocation": "100000",
                    "allocationDirection": "10",
                }

                def post(info: dict[str, object] = info) -> float:
                    t0 = time.perf_counter()
                    resp = r.post(COLLECTION, json=info)
                    elapsed = (time.perf_counter() - t0) * 1000.0
                    if resp.status_code != 201:
                        raise RuntimeError(f"REST POST: {resp.status_code} {resp.text[:200]}")
                    r.delete(resp.headers["location"])
                    return elapsed

                def request(k: int = k, name: str = name) -> float:
                    t0 = time.perf_counter()
                    alloc = g.request_bandwidth(f"bench-g{k}", name, 100_000, "both")
                    elapsed = (time.perf_counter() - t0) * 1000.0
                    g.release_bandwidth(alloc.allocation_id)
                    return elapsed

                first, second = (post, request) if k % 2 else (request, post)
                a, b = first(), second()
                if k >= 10:  # warm-up rounds are not counted
                    rest_ms.append(a if first is post else b)
                    grpc_ms.append(b if first is post else a)
    finally:
        rest.stop(0.5)
        server.stop(0.5)
        server.engine.store.close()
    return rest_ms, grpc_ms


def run(quick: bool) -> Iterator[Figure]:
    with tempfile.TemporaryDirectory(prefix="sliceai-bench-") as tmp:
        rest_ms, grpc_ms = _rounds(quick, Path(tmp))
    yield Figure.compare(
        BENCH,
        f"MEC 015 POST to grant, {LATENCY_SLICES} slices",
        "p99",
        percentile(rest_ms, 99),
        "ms",
        "gRPC RequestBandwidth",
        percentile(grpc_ms, 99),
        note=f"p50 {percentile(rest_ms, 50):.2f} ms vs gRPC {percentile(grpc_ms, 50):.2f} ms "
        f"over {len(rest_ms)} rounds, same engine and store, loopback, in-process clients "
        "(httpx with TCP_NODELAY); "
        "target <= 20 ms",
    )
