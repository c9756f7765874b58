"""Build and run the sliceai gRPC server: services, health, reflection, TLS, limits.

:func:`build_server` registers the three sliceai.v1 services plus
``grpc.health.v1.Health`` and server reflection on one ``grpc.server``.
Health is NOT_SERVING until the engine has loaded its model and computed its
first plan (solver warm), SERVING after, and NOT_SERVING again during shutdown.

Plaintext is only allowed on loopback addresses; anything else needs TLS, and
server-only TLS off loopback (no caller identified) needs ``allow_anonymous``.
A unary request that does not decode (corrupt protobuf, invalid UTF-8 in a
string) is answered INVALID_ARGUMENT, after the caller's identity is checked.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from sliceai.api.addresses import is_loopback
from sliceai.api.auth import Authorizer, RateLimiter
from sliceai.api.limits import StreamGate
from sliceai.api.servicers import (
    AdminServicer,
    ControllerServicer,
    MecServicer,
    PlanCache,
)
from sliceai.engine import Engine
from sliceai.engine.limits import LimitHits
from sliceai.v1 import admin_pb2, controller_pb2, mec_pb2

log = logging.getLogger(__name__)

#: Nice increment of the threads that run RPC handlers with ``serve --request-nice``
#: (default 0): under a flood of requests they yield the CPU to the control loop thread and
#: the planner process (make soak, 1.5 min: the planner process p50 61 -> 44 ms, hostile
#: driver at the same priority); but on a shared host any other work then comes before
#: requests (a CI run starved grant requests so), hence opt-in.
REQUEST_NICE = 10
MAX_MESSAGE_BYTES = 2 << 20  # a 1 MiB policy text plus framing; telemetry batches are far smaller
SERVICE_NAMES = (
    controller_pb2.DESCRIPTOR.services_by_name["ControllerService"].full_name,
    mec_pb2.DESCRIPTOR.services_by_name["MecService"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
)


class ServerConfigError(ValueError):
    """Unusable listen address or TLS files; ``str`` says which."""


@dataclass
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path | None = None  # set: mutual TLS, client certificates required


@dataclass
class ServerSettings:
    listen: str = "127.0.0.1:50051"
    tls: TlsFiles | None = None
    rate_per_s: float = 2000.0  # per client: messages (RPCs or telemetry batches) per second
    burst: float = 4000.0
    allow_anonymous: bool = False  # certificates without a valid identity: read-only anonymous
    request_nice: int = 0  # request threads' nice increment (serve --request-nice)


def lower_priority(increment: int) -> None:
    """Raise the calling thread's nice value by ``increment`` (Linux: per thread; never
    refused, since lowering one's own priority needs no privilege); 0 does nothing."""
    if increment:
        try:
            os.nice(increment)
        except OSError as exc:  # not Linux, or a sandbox without setpriority
            log.info("request threads keep their priority: %s", exc)


def _passthrough(message: Any) -> bytes:
    if isinstance(message, bytes):
        return message
    out: bytes = message.SerializeToString()
    return out


@dataclass(frozen=True)
class _Unary:
    """What a unary handler checks before the servicer sees a request."""

    auth: Authorizer
    hits: LimitHits
    method: str
    max_bytes: int


def _decode(
    unary: _Unary, message: type[Message], request: bytes, context: grpc.ServicerContext
) -> Any:
    """``request`` parsed as ``message``: one over ``max_bytes`` aborts with
    RESOURCE_EXHAUSTED before it is parsed, an undecodable one with INVALID_ARGUMENT."""
    unary.auth.authenticate(context)  # strangers learn nothing, not even how their bytes parse
    if len(request) > unary.max_bytes:
        refused = unary.hits.hit(
            "request_bytes",
            f"{unary.method} request of {len(request)} bytes; at most {unary.max_bytes}",
        )
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(refused))
    try:
        return message.FromString(request)
    except DecodeError as exc:
        context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"request is not a valid {message.DESCRIPTOR.full_name}: {exc}",
        )


def _unary_handler(
    unary: _Unary, behaviour: Callable[[Any, grpc.ServicerContext], Any], message: type[Message]
) -> grpc.RpcMethodHandler[Any, Any]:
    def handle(request: bytes, context: grpc.ServicerContext) -> Any:
        return behaviour(_decode(unary, message, request, context), context)

    return grpc.unary_unary_rpc_method_handler(handle, response_serializer=_passthrough)


def _unary_stream_handler(
    unary: _Unary,
    behaviour: Callable[[Any, grpc.ServicerContext], Iterator[Any]],
    message: type[Message],
) -> grpc.RpcMethodHandler[Any, Any]:
    def handle(request: bytes, context: grpc.ServicerContext) -> Iterator[Any]:
        yield from behaviour(_decode(unary, message, request, context), context)

    return grpc.unary_stream_rpc_method_handler(handle, response_serializer=_passthrough)


def _handlers(
    auth: Authorizer,
    engine: Engine,
    controller: ControllerServicer,
    mec: MecServicer,
    admin: AdminServicer,
) -> list[grpc.GenericRpcHandler[Any, Any]]:
    m, a = mec_pb2, admin_pb2

    def checks(service: str, behaviour: Callable[..., Any]) -> _Unary:
        method = f"{service}.{behaviour.__name__}"  # as METHOD_ROLES names it
        return _Unary(auth, engine.limit_hits, method, engine.limits.request_bytes_for(method))

    def unary(service: str, behaviour: Callable[..., Any], message: type[Message]) -> Any:
        return _unary_handler(checks(service, behaviour), behaviour, message)

    return [
        grpc.method_handlers_generic_handler(
            SERVICE_NAMES[0],
            {
                "Connect": grpc.stream_stream_rpc_method_handler(
                    controller.Connect,
                    request_deserializer=None,  # wire bytes: the servicer reads or parses them
                    response_serializer=_passthrough,
                )
            },
        ),
        grpc.method_handlers_generic_handler(
            SERVICE_NAMES[1],
            {
                "PushTelemetry": unary("MecService", mec.PushTelemetry, m.KpmReport),
                "GetForecast": unary("MecService", mec.GetForecast, m.ForecastRequest),
                "RequestBandwidth": unary("MecService", mec.RequestBandwidth, m.BwInfo),
                "ModifyBandwidth": unary(
                    "MecService", mec.ModifyBandwidth, m.ModifyBandwidthRequest
                ),
                "ReleaseBandwidth": unary(
                    "MecService", mec.ReleaseBandwidth, m.ReleaseBandwidthRequest
                ),
                "ListBandwidth": unary("MecService", mec.ListBandwidth, m.ListBandwidthRequest),
                "WatchAllocations": _unary_stream_handler(
                    checks("MecService", mec.WatchAllocations),
                    mec.WatchAllocations,
                    m.WatchAllocationsRequest,
                ),
            },
        ),
        grpc.method_handlers_generic_handler(
            SERVICE_NAMES[2],
            {
                "GetPolicy": unary("AdminService", admin.GetPolicy, a.GetPolicyRequest),
                "ApplyPolicy": unary("AdminService", admin.ApplyPolicy, a.ApplyPolicyRequest),
                "ListPolicyVersions": unary(
                    "AdminService", admin.ListPolicyVersions, a.ListPolicyVersionsRequest
                ),
            },
        ),
    ]


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ServerConfigError(f"{what} {path}: {exc.strerror or exc}") from None


class SliceaiServer:
    """A built server; :meth:`start` binds and serves, :meth:`stop` drains and stops."""

    def __init__(self, engine: Engine, settings: ServerSettings) -> None:
        self.engine = engine
        self.settings = settings
        loopback = is_loopback(settings.listen)
        if settings.tls is None and not loopback:
            raise ServerConfigError(
                f"refusing plaintext on {settings.listen}: not a loopback address; "
                "give --tls-cert and --tls-key"
            )
        mutual = settings.tls is not None and settings.tls.client_ca is not None
        if (
            settings.tls is not None
            and not mutual
            and not loopback
            and not settings.allow_anonymous
        ):
            raise ServerConfigError(
                f"refusing server-only TLS on {settings.listen}: no caller would have an "
                "identity; give --client-ca for mutual TLS (or --allow-anonymous for "
                "read-only anonymous access)"
            )
        self.auth = Authorizer(
            mutual,
            loopback,
            RateLimiter(settings.rate_per_s, settings.burst),
            allow_anonymous=settings.allow_anonymous,
        )
        self.server = grpc.server(
            # every stream's thread and Limits.unary_workers more: streams cannot starve unary calls
            # request threads yield the CPU to the control loop and the planner process
            futures.ThreadPoolExecutor(
                max_workers=engine.limits.workers,
                thread_name_prefix="grpc",
                initializer=lower_priority,
                initargs=(settings.request_nice,),
            ),
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", 16 << 20),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=engine.limits.workers,
        )
        streams = StreamGate(engine.limits, engine.limit_hits)
        cache = PlanCache()
        self.server.add_generic_rpc_handlers(
            _handlers(
                self.auth,
                engine,
                ControllerServicer(engine, self.auth, streams, cache),
                MecServicer(engine, self.auth, streams, cache),
                AdminServicer(engine, self.auth),
            )
        )
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )
        if settings.tls is None:
            port = self.server.add_insecure_port(settings.listen)
        else:
            creds = grpc.ssl_server_credentials(
                [(_read(settings.tls.key, "TLS key"), _read(settings.tls.cert, "TLS certificate"))],
                root_certificates=_read(settings.tls.client_ca, "client CA")
                if settings.tls.client_ca
                else None,
                require_client_auth=mutual,
            )
            port = self.server.add_secure_port(settings.listen, creds)
        if port == 0:
            raise ServerConfigError(f"cannot listen on {settings.listen}")
        self.port = port

    def _set_health(self, status: Any) -> None:
        self.health.set("", status)
        for name in SERVICE_NAMES:
            self.health.set(name, status)

    def start(self) -> None:
        """Serve; health turns SERVING once the engine is warm (model loaded, first plan
        solved), and is NOT_SERVING while the state database cannot be read or written."""
        self.server.start()
        if not self.engine.ready.is_set():
            self.engine.start()
        self.engine.store.on_fault.append(self._store_fault)
        self._store_fault(self.engine.store.fault)

    def _store_fault(self, fault: str | None) -> None:
        """The store's fault changed (None: it can write again)."""
        status = health_pb2.HealthCheckResponse
        self._set_health(status.NOT_SERVING if fault else status.SERVING)

    def stop(self, grace_s: float = 2.0) -> None:
        """NOT_SERVING, stop the loop (ends streams), let in-flight calls finish for ``grace_s``."""
        self.health.enter_graceful_shutdown()
        self.engine.stop()
        self.server.stop(grace_s).wait()

    def wait(self, timeout: float | None = None) -> bool:
        return bool(self.server.wait_for_termination(timeout))
