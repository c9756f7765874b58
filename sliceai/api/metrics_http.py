"""The Prometheus endpoint of ``sliceai serve --metrics-port``: ``GET /metrics`` and nothing else.

Like the gRPC listener: plaintext on loopback addresses only; any other address
needs the server's TLS certificate and key (:class:`MetricsTls`), and with a client
CA the scraper must present a certificate from it that carries a sliceai identity
(any role; see :mod:`sliceai.api.auth`) unless anonymous callers are allowed.
Every other path answers 404, any method but GET 405. At most ``max_connections``
connections are served at once (more are closed at once), and a connection that
sends nothing, or too slowly, is closed after ``timeout_s``, so idle or slow
clients cannot pile up threads. A port already in use, or any address that cannot
be bound, raises :class:`MetricsConfigError` with one line saying so.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from cryptography import x509
from prometheus_client import CollectorRegistry, make_wsgi_app

from sliceai.api.addresses import is_loopback_host
from sliceai.api.auth import IdentityError, identity_of_certificate

log = logging.getLogger(__name__)

PATH = "/metrics"
MAX_CONNECTIONS = 16
TIMEOUT_S = 10.0


class MetricsConfigError(ValueError):
    """The metrics endpoint cannot serve as asked; ``str`` is one line saying why."""


@dataclass(frozen=True)
class MetricsTls:
    cert: Path
    key: Path
    client_ca: Path | None = None  # set: client certificates required


def _ssl_context(tls: MetricsTls) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(tls.cert), str(tls.key))
        if tls.client_ca is not None:
            ctx.load_verify_locations(cafile=str(tls.client_ca))
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise MetricsConfigError(f"metrics TLS: {exc}") from None
    return ctx


def _app(registry: CollectorRegistry, identify: Callable[[Any], str | None]) -> Any:
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        refusal = identify(environ.get("sliceai.peer_cert"))
        if refusal is not None:
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [f"{refusal}\n".encode()]
        if environ.get("PATH_INFO") != PATH:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [f"not found; metrics are at {PATH}\n".encode()]
        if environ.get("REQUEST_METHOD") != "GET":
            start_response("405 Method Not Allowed", [("Allow", "GET")])
            return [b""]
        return metrics(environ, start_response)  # type: ignore[no-any-return]

    return app


class _Handler(WSGIRequestHandler):
    """One request per connection (HTTP/1.0), under the server's socket timeout."""

    timeout = TIMEOUT_S

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.timeout_s)  # type: ignore[attr-defined]
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()  # here, in this connection's thread, under the timeout

    def get_environ(self) -> dict[str, Any]:
        env = super().get_environ()
        if isinstance(self.connection, ssl.SSLSocket):
            env["sliceai.peer_cert"] = self.connection.getpeercert(binary_form=True)
        return env

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: a scraper every few seconds is not news."""


class _BoundedServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], family: int, limit: int, timeout_s: float) -> None:
        self.address_family = family
        self.timeout_s = timeout_s
        self.slots = threading.BoundedSemaphore(limit)
        self.refused = 0
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.refused += 1
            self.shutdown_request(request)  # over the limit: closed, no thread
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out, hung up or failed the TLS handshake: log, no traceback."""
        log.debug("metrics connection from %s ended badly", client_address, exc_info=True)


class MetricsServer:
    """``/metrics`` served from a daemon thread; :meth:`close` stops it."""

    def __init__(
        self,
        registry: CollectorRegistry,
        addr: str = "127.0.0.1",
        port: int = 0,
        tls: MetricsTls | None = None,
        allow_anonymous: bool = False,
        max_connections: int = MAX_CONNECTIONS,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        where = f"{addr}:{port}"
        if tls is None and not is_loopback_host(addr):
            raise MetricsConfigError(
                f"refusing plaintext metrics on {where}: not a loopback address; "
                "give --tls-cert and --tls-key (or --metrics-addr 127.0.0.1)"
            )
        context = _ssl_context(tls) if tls is not None else None
        try:
            info = socket.getaddrinfo(
                addr.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            family, _, _, _, sockaddr = info[0]
            bind = (str(sockaddr[0]), int(sockaddr[1]))
            self.httpd = _BoundedServer(bind, family, max_connections, timeout_s)
        except (OSError, OverflowError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise MetricsConfigError(f"metrics on {where}: {reason}") from None
        self.httpd.set_app(_app(registry, self._identify))
        self._mutual = tls is not None and tls.client_ca is not None
        self._allow_anonymous = allow_anonymous
        if context is not None:
            self.httpd.socket = context.wrap_socket(
                self.httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="metrics-http", daemon=True
        )
        self._thread.start()

    def _identify(self, der: bytes | None) -> str | None:
        """None when the scraper may read; else why not (mutual TLS: it needs an identity)."""
        if not self._mutual or self._allow_anonymous:
            return None
        try:
            identity_of_certificate(x509.load_der_x509_certificate(der or b""))
        except (IdentityError, ValueError) as exc:
            return f"no valid identity in the client certificate: {exc}"
        return None

    @property
    def refused(self) -> int:
        """Connections closed because ``max_connections`` were already open."""
        return self.httpd.refused

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)
