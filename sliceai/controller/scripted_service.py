"""A minimal ``ControllerService`` that sends the plans it is told to: for the e2e test and bench.

Not the sliceai service: it computes nothing. It serves ``Connect`` on a
loopback port, records the telemetry batches it receives, sends the policy (if
given) and the latest plan to every new stream, and pushes each new plan to all
open streams. :meth:`stop` ends every stream and closes the port, which is what
"the service was killed" looks like to the plugin.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent import futures
from typing import Any

import grpc

from sliceai.policy.model import DIRECTIONS, Direction
from sliceai.v1 import common_pb2, controller_pb2, controller_pb2_grpc

_END = object()


def plan_message(rates: Mapping[tuple[str, Direction], float], version: int) -> Any:
    """A ``ServerMessage`` carrying a ``Plan`` with these rates (bit/s)."""
    names = sorted({n for n, _ in rates})
    slices = [
        common_pb2.SliceAllocation(
            slice=n,
            dl_bps=rates.get((n, Direction.DL), 0.0),
            ul_bps=rates.get((n, Direction.UL), 0.0),
        )
        for n in names
    ]
    plan = common_pb2.Plan(version=version, computed_at_unix_s=time.time(), slices=slices)
    return controller_pb2.ServerMessage(plan=plan)


class ScriptedControllerService:
    """Serves ``ControllerService.Connect`` on ``127.0.0.1:port`` (0: the OS picks)."""

    def __init__(self, port: int = 0, policy_yaml: str | None = None) -> None:
        self.requested_port = port
        self.port = 0
        self.policy_yaml = policy_yaml
        self.telemetry: list[Any] = []
        self.hellos: list[Any] = []
        self._streams: list[queue.Queue[Any]] = []
        self._lock = threading.Lock()
        self._latest: Any = None
        self._server: Any = None

    def start(self) -> int:
        """Start serving; returns the bound port (the same one again after a :meth:`stop`)."""
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        controller_pb2_grpc.add_ControllerServiceServicer_to_server(_Servicer(self), server)  # type: ignore[no-untyped-call]
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port or self.requested_port}")
        if self.port == 0:
            raise RuntimeError("scripted service: could not bind a port on 127.0.0.1")
        server.start()
        self._server = server
        return self.port

    def stop(self) -> None:
        """End every stream and stop listening (the plugin sees the service die)."""
        with self._lock:
            for q in self._streams:
                q.put(_END)
            self._streams.clear()
        if self._server is not None:
            self._server.stop(grace=None).wait(5)
            self._server = None

    def send_plan(self, rates: Mapping[tuple[str, Direction], float], version: int) -> float:
        """Push a plan to every open stream; returns ``time.monotonic()`` when it was queued."""
        msg = plan_message(rates, version)
        with self._lock:
            self._latest = msg
            for q in self._streams:
                q.put(msg)
        return time.monotonic()

    @property
    def connected_streams(self) -> int:
        with self._lock:
            return len(self._streams)

    def connect(self, request_iterator: Iterator[Any], context: Any) -> Iterator[Any]:
        """One ``Connect`` stream: record what the plugin sends, send it the policy and plans."""
        q: queue.Queue[Any] = queue.Queue()

        def consume() -> None:
            try:
                for msg in request_iterator:
                    kind = msg.WhichOneof("kind")
                    (self.hellos if kind == "hello" else self.telemetry).append(
                        msg.hello if kind == "hello" else msg.telemetry
                    )
            except Exception:  # the stream was cancelled
                pass
            q.put(_END)

        threading.Thread(target=consume, daemon=True).start()
        with self._lock:
            self._streams.append(q)
            if self.policy_yaml is not None:
                q.put(
                    controller_pb2.ServerMessage(
                        policy=controller_pb2.PolicyUpdate(version=1, yaml=self.policy_yaml)
                    )
                )
            if self._latest is not None:
                q.put(self._latest)
        try:
            while context.is_active():
                try:
                    item = q.get(timeout=0.2)
                except queue.Empty:
                    continue
                if item is _END:
                    return
                yield item
        finally:
            with self._lock:
                if q in self._streams:
                    self._streams.remove(q)


class _Servicer(controller_pb2_grpc.ControllerServiceServicer):
    """Hands each ``Connect`` stream to the :class:`ScriptedControllerService` it serves."""

    def __init__(self, service: ScriptedControllerService) -> None:
        self.service = service

    def Connect(self, request_iterator: Iterator[Any], context: Any) -> Iterator[Any]:
        return self.service.connect(request_iterator, context)


def uniform_rates(names: tuple[str, ...], bps: float) -> dict[tuple[str, Direction], float]:
    """Every slice at ``bps`` in both directions."""
    return {(n, d): bps for n in names for d in DIRECTIONS}
