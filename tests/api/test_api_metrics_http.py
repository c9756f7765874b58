"""The /metrics endpoint: loopback or TLS, /metrics only, bounded connections, clean errors."""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Gauge

from sliceai.api.metrics_http import MetricsConfigError, MetricsServer, MetricsTls

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def registry() -> CollectorRegistry:
    r = CollectorRegistry()
    Gauge("sliceai_probe", "a probe", registry=r).set(42)
    return r


@pytest.fixture
def serve(registry: CollectorRegistry) -> Iterator[Callable[..., MetricsServer]]:
    servers: list[MetricsServer] = []

    def start(**kw: Any) -> MetricsServer:
        servers.append(MetricsServer(registry, "127.0.0.1", 0, **kw))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def _get(
    port: int, path: str, method: str = "GET", context: ssl.SSLContext | None = None
) -> tuple[int, str]:
    if context is None:
        conn: http.client.HTTPConnection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def test_only_metrics_is_served(serve: Callable[..., MetricsServer]) -> None:
    port = serve().port
    status, body = _get(port, "/metrics")
    assert status == 200
    assert "sliceai_probe 42.0" in body
    assert _get(port, "/metrics?name[]=sliceai_probe")[0] == 200
    for path in ("/", "/favicon.ico", "/metrics/", "/metricsx", "/healthz", "/../metrics"):
        status, body = _get(port, path)
        assert (status, "sliceai_probe" in body) == (404, False), path
    for method in ("POST", "PUT", "DELETE", "HEAD", "OPTIONS"):
        assert _get(port, "/metrics", method=method)[0] == 405, method


@pytest.mark.parametrize("addr", ["0.0.0.0", "::", "192.0.2.1", "example.org"])
def test_plaintext_off_loopback_is_refused(registry: CollectorRegistry, addr: str) -> None:
    with pytest.raises(MetricsConfigError, match="refusing plaintext metrics"):
        MetricsServer(registry, addr, 0)


def test_tls_with_the_server_certificate(serve: Callable[..., MetricsServer], pki: Any) -> None:
    port = serve(tls=MetricsTls(pki.server_cert, pki.server_key)).port
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    status, body = _get(port, "/metrics", context=ctx)
    assert status == 200
    assert "sliceai_probe 42.0" in body
    with pytest.raises((http.client.HTTPException, OSError)):
        _get(port, "/metrics")  # plaintext to a TLS port gets no metrics


def _mutual(pki: Any, name: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if name is not None:
        cert, key = pki.client(name)
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def test_mutual_tls_needs_a_certificate_with_an_identity(
    serve: Callable[..., MetricsServer], pki: Any
) -> None:
    tls = MetricsTls(pki.server_cert, pki.server_key, pki.ca)
    port = serve(tls=tls).port
    assert _get(port, "/metrics", context=_mutual(pki, "app1"))[0] == 200
    status, body = _get(port, "/metrics", context=_mutual(pki, "dns-spoof"))
    assert status == 403
    assert "no URI subject alternative name" in body
    with pytest.raises((ssl.SSLError, OSError, http.client.HTTPException)):
        _get(port, "/metrics", context=_mutual(pki, "rogue"))  # another CA
    with pytest.raises((ssl.SSLError, OSError, http.client.HTTPException)):
        _get(port, "/metrics", context=_mutual(pki, None))  # no certificate
    anonymous = serve(tls=tls, allow_anonymous=True).port
    assert _get(anonymous, "/metrics", context=_mutual(pki, "dns-spoof"))[0] == 200


def _idle(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s


def _closed_by_server(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def _until_ok(port: int) -> int:
    """GET /metrics until it answers (a slot frees once its thread has seen the close)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return _get(port, "/metrics")[0]
        except (ConnectionError, http.client.HTTPException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_connections_are_bounded(serve: Callable[..., MetricsServer]) -> None:
    server = serve(max_connections=2, timeout_s=30)
    held = [_idle(server.port), _idle(server.port)]  # accepted first, they hold both slots
    extra = _idle(server.port)
    assert _closed_by_server(extra)  # closed at once: no thread for it
    assert server.refused == 1
    for s in (*held, extra):
        s.close()
    assert _until_ok(server.port) == 200


def test_idle_connections_are_closed(serve: Callable[..., MetricsServer]) -> None:
    server = serve(max_connections=1, timeout_s=0.3)
    idle = _idle(server.port)
    assert _closed_by_server(idle)  # the server gave up on it (the client waits up to 10 s)
    assert server.refused == 0  # timed out, not turned away
    idle.close()
    # and its slot is free again (a GET in the moment before its thread has ended is turned
    # away: _until_ok tries again, so refusals may count up from here)
    assert _until_ok(server.port) == 200


def test_a_port_in_use_is_one_clean_line(registry: CollectorRegistry) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(MetricsConfigError, match=f"metrics on 127.0.0.1:{port}: .*in use"):
            MetricsServer(registry, "127.0.0.1", port)


def _serve(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "sliceai", "serve", "--model", "empirical"]
    cmd += ["--policy", str(REPO / "policies" / "hospital.yaml"), "--db", str(tmp_path / "s.db")]
    cmd += ["--listen", "127.0.0.1:0", *flags]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_serve_exits_2_with_one_line_for_a_busy_or_open_metrics_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = _serve(tmp_path, "--metrics-port", str(port))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        f"sliceai serve: metrics on 127.0.0.1:{port}: Address already in use"
    )
    out = _serve(tmp_path, "--metrics-port", "0", "--metrics-addr", "0.0.0.0")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "refusing plaintext metrics on 0.0.0.0:0" in out.stderr.strip().splitlines()[-1]
