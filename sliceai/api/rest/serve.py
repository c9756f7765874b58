"""Serve the MEC 015 REST API on uvicorn, in a thread beside the gRPC server.

The same listening rules as gRPC: plaintext only on loopback; server-only TLS off
loopback only with ``allow_anonymous``; with a client CA, mutual TLS, and each caller's
identity is read from its verified certificate's URI SAN by
:meth:`sliceai.api.auth.Authorizer.caller_of`, exactly as for gRPC. uvicorn's h11
protocol is extended only to hand the peer certificate (DER) to each request.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from sliceai.api.addresses import host_of, is_loopback
from sliceai.api.auth import Authorizer, RateLimiter
from sliceai.api.rest.app import PEER_CERT, build_app
from sliceai.api.server import ServerConfigError, TlsFiles
from sliceai.engine import Engine

MAX_CONNECTIONS = 256
KEEP_ALIVE_S = 10


class PeerCertProtocol(H11Protocol):
    """uvicorn's h11 protocol; each request's ``scope["state"]`` carries the peer's certificate."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        self.app_state = {**self.app_state, PEER_CERT: der}


def _port_of(listen: str) -> int:
    _, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ServerConfigError(f"--rest {listen}: give HOST:PORT")
    return int(port)


class RestServer:
    """A bound MEC 015 REST server; :meth:`start` serves in a thread, :meth:`stop` ends it."""

    def __init__(
        self,
        engine: Engine,
        listen: str,
        tls: TlsFiles | None = None,
        limiter: RateLimiter | None = None,
        allow_anonymous: bool = False,
    ) -> None:
        loopback = is_loopback(listen)
        mutual = tls is not None and tls.client_ca is not None
        if tls is None and not loopback:
            raise ServerConfigError(
                f"refusing plaintext REST on {listen}: not a loopback address; "
                "give --tls-cert and --tls-key"
            )
        if tls is not None and not mutual and not loopback and not allow_anonymous:
            raise ServerConfigError(
                f"refusing server-only TLS REST on {listen}: no caller would have an "
                "identity; give --client-ca (or --allow-anonymous)"
            )
        port = _port_of(listen)
        host = host_of(listen)
        self.auth = Authorizer(
            mutual, loopback, limiter or RateLimiter(2000.0, 4000.0), allow_anonymous
        )
        self.app = build_app(engine, self.auth)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # proto IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only then (with
        # proto 0, Nagle holds each response's body for the client's delayed ACK: 40 ms)
        self.sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((host, port))
            self.sock.listen(128)
        except OSError as exc:
            self.sock.close()
            raise ServerConfigError(f"cannot listen on {listen}: {exc.strerror or exc}") from None
        self.port = int(self.sock.getsockname()[1])
        self.scheme = "https" if tls else "http"
        options: dict[str, Any] = {}
        if tls is not None:
            for path in (tls.cert, tls.key, tls.client_ca):
                if path is not None and not path.is_file():
                    self.sock.close()
                    raise ServerConfigError(f"TLS file {path}: not a readable file")
            options = {"ssl_certfile": str(tls.cert), "ssl_keyfile": str(tls.key)}
            if mutual:
                options |= {"ssl_ca_certs": str(tls.client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
        config = uvicorn.Config(
            self.app,
            http=PeerCertProtocol,
            ws="none",
            lifespan="off",
            log_level="warning",
            access_log=False,
            limit_concurrency=MAX_CONNECTIONS,
            timeout_keep_alive=KEEP_ALIVE_S,
            **options,
        )
        try:
            config.load()  # the TLS files are read here: a bad one is a configuration error
        except (OSError, ssl.SSLError) as exc:
            self.sock.close()
            raise ServerConfigError(f"REST TLS: {exc}") from None
        except BaseException:
            self.sock.close()
            raise
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        """Serve in a daemon thread; returns once uvicorn accepts connections."""
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])),
            name="rest",
            daemon=True,
        )
        self._thread.start()
        waited = 0.0
        while not self.server.started and self._thread.is_alive() and waited < timeout_s:
            threading.Event().wait(0.01)
            waited += 0.01
        if not self.server.started:
            raise ServerConfigError("the REST server did not start")

    def stop(self, grace_s: float = 2.0) -> None:
        """Stop accepting, let in-flight requests finish for up to ``grace_s``."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(grace_s + 1.0)
        self.sock.close()
