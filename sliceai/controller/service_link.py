"""The plugin's gRPC stream to the sliceai service (``ControllerService.Connect``).

Runs in its own native thread and never touches a datapath: what the service
sends is put on ``inbox`` (a thread-safe :class:`queue.Queue`) as
:class:`LinkEvent` values, which the controller's own thread drains; telemetry
to send is handed over with :meth:`ServiceLink.send_telemetry`. On any stream
error it reconnects with exponential backoff (``backoff_min_s`` doubling up to
``backoff_max_s``, +-20 % jitter), reporting ``lost`` each time.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import grpc

from sliceai.controller.counters import SliceRate
from sliceai.policy.model import Direction
from sliceai.v1 import controller_pb2, controller_pb2_grpc

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class LinkEvent:
    """Something the service link saw; ``received_at`` is ``time.monotonic()`` seconds."""

    kind: Literal["connected", "lost", "policy", "plan"]
    received_at: float
    rates: Mapping[tuple[str, Direction], float] = field(default_factory=dict)
    version: int = 0
    policy_yaml: str = ""
    detail: str = ""


def plan_rates(plan: Any) -> dict[tuple[str, Direction], float]:
    """A ``sliceai.v1.Plan`` message -> bit/s per (slice name, direction)."""
    out: dict[tuple[str, Direction], float] = {}
    for alloc in plan.slices:
        out[(alloc.slice, Direction.DL)] = float(alloc.dl_bps)
        out[(alloc.slice, Direction.UL)] = float(alloc.ul_bps)
    return out


def telemetry_batch(
    datapath_id: int,
    rates: Mapping[tuple[str, Direction], SliceRate],
    period_s: float,
    unix_now: float,
    end_of_period: bool = True,
) -> Any:
    """A ``ControllerMessage`` carrying one ``TelemetryBatch`` (carried bit/s, dropped bytes).

    ``end_of_period``: True only on the last datapath's batch of a polling round.
    """
    names = sorted({name for name, _ in rates})
    zero = SliceRate(0.0, 0.0, 0)
    dl = [rates.get((n, Direction.DL), zero) for n in names]
    ul = [rates.get((n, Direction.UL), zero) for n in names]
    batch = controller_pb2.TelemetryBatch(
        datapath_id=datapath_id,
        timestamp_unix_s=unix_now,
        period_s=period_s,
        slices=names,
        dl_bps=[r.carried_bps for r in dl],
        ul_bps=[r.carried_bps for r in ul],
        dl_dropped_bytes=[r.dropped_bytes for r in dl],
        ul_dropped_bytes=[r.dropped_bytes for r in ul],
        end_of_period=end_of_period,
    )
    return controller_pb2.ControllerMessage(telemetry=batch)


@dataclass(frozen=True)
class LinkSettings:
    """Where the service is and how to reach it.

    ``target``: ``HOST:PORT``. ``tls_ca`` / ``tls_cert`` / ``tls_key``: PEM file
    paths (CA alone: TLS; with cert and key: mutual TLS); none: plaintext.
    ``metadata``: extra call metadata, e.g. an authorization token.
    """

    target: str
    source_id: str = "osken-1"
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    backoff_min_s: float = 0.5
    backoff_max_s: float = 10.0


class ServiceLink:
    """A reconnecting ``Connect`` stream in a daemon thread."""

    def __init__(
        self,
        settings: LinkSettings,
        datapath_ids: Callable[[], Sequence[int]],
        software: str = "sliceai-controller",
    ) -> None:
        self.settings = settings
        self.inbox: queue.Queue[LinkEvent] = queue.Queue()
        self._outbox: queue.Queue[Any] = queue.Queue(maxsize=64)
        self._datapath_ids = datapath_ids
        self._software = software
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sliceai-service-link", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def send_telemetry(self, message: Any) -> None:
        """Queue a ControllerMessage; the oldest is dropped when the service is slow or away."""
        while True:
            try:
                self._outbox.put_nowait(message)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._outbox.get_nowait()

    def _channel(self) -> Any:
        s = self.settings
        if s.tls_ca is None and s.tls_cert is None:
            return grpc.insecure_channel(s.target)

        def read(path: str | None) -> bytes | None:
            if path is None:
                return None
            with open(path, "rb") as fh:
                return fh.read()

        creds = grpc.ssl_channel_credentials(read(s.tls_ca), read(s.tls_key), read(s.tls_cert))
        return grpc.secure_channel(s.target, creds)

    def _requests(self, done: threading.Event) -> Iterator[Any]:
        hello = controller_pb2.Hello(
            source_id=self.settings.source_id,
            datapath_ids=list(self._datapath_ids()),
            software=self._software,
        )
        yield controller_pb2.ControllerMessage(hello=hello)
        while not done.is_set() and not self._stop.is_set():
            try:
                yield self._outbox.get(timeout=0.2)
            except queue.Empty:
                continue

    def _run(self) -> None:
        delay = self.settings.backoff_min_s
        while not self._stop.is_set():
            done = threading.Event()
            channel = self._channel()
            heard = False
            detail = "stream ended"
            try:
                stub = controller_pb2_grpc.ControllerServiceStub(channel)  # type: ignore[no-untyped-call]
                call = stub.Connect(self._requests(done), metadata=self.settings.metadata or None)
                for msg in call:
                    now = time.monotonic()
                    if not heard:
                        heard = True
                        delay = self.settings.backoff_min_s
                        self.inbox.put(LinkEvent("connected", now))
                    kind = msg.WhichOneof("kind")
                    if kind == "plan":
                        self.inbox.put(
                            LinkEvent("plan", now, plan_rates(msg.plan), version=msg.plan.version)
                        )
                    elif kind == "policy":
                        self.inbox.put(
                            LinkEvent(
                                "policy",
                                now,
                                version=msg.policy.version,
                                policy_yaml=msg.policy.yaml,
                            )
                        )
                    if self._stop.is_set():
                        call.cancel()
                        break
            except Exception as exc:  # grpc.RpcError and anything the stream raises
                code = getattr(exc, "code", None)
                detail = f"{code() if callable(code) else type(exc).__name__}: " + (
                    exc.details() if hasattr(exc, "details") else str(exc)
                )
            finally:
                done.set()
                channel.close()
            if self._stop.is_set():
                return
            self.inbox.put(LinkEvent("lost", time.monotonic(), detail=detail))
            LOG.warning("service %s: %s; retrying in %.1f s", self.settings.target, detail, delay)
            self._stop.wait(delay * random.uniform(0.8, 1.2))
            delay = min(self.settings.backoff_max_s, delay * 2)
