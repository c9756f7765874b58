"""Python client for the sliceai service.

>>> with SliceaiClient("127.0.0.1:50051") as client:       # doctest: +SKIP
...     grant = client.request_bandwidth("app-1", "consults", 5e6, "both")
...     for plan in client.watch():
...         print(plan.version, [s.dl_bps for s in plan.slices])

Mutual TLS: ``SliceaiClient(target, ca=..., cert=..., key=...)``; the client
certificate's SAN ``spiffe://sliceai/<role>/<identity>`` decides what it may do
(see :mod:`sliceai.api.auth`).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sliceai.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    common_pb2,
    controller_pb2,
    controller_pb2_grpc,
    mec_pb2,
    mec_pb2_grpc,
)

DIRECTIONS = {
    "dl": mec_pb2.ALLOCATION_DIRECTION_DOWNLINK,
    "ul": mec_pb2.ALLOCATION_DIRECTION_UPLINK,
    "both": mec_pb2.ALLOCATION_DIRECTION_BOTH,
}
_CLOSE = object()


class ControllerStream:
    """An open ControllerService.Connect stream: :meth:`send` batches up, iterate messages down."""

    def __init__(
        self, stub: controller_pb2_grpc.ControllerServiceStub, hello: controller_pb2.Hello
    ) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=1024)
        self._queue.put(controller_pb2.ControllerMessage(hello=hello))
        self.call = stub.Connect(self._requests())

    def _requests(self) -> Iterator[controller_pb2.ControllerMessage]:
        while True:
            item = self._queue.get()
            if item is _CLOSE:
                return
            yield item  # type: ignore[misc]

    def send(self, batch: controller_pb2.TelemetryBatch) -> None:
        self._queue.put(controller_pb2.ControllerMessage(telemetry=batch))

    def send_rates(
        self,
        slices: Sequence[str],
        dl_bps: Sequence[float],
        ul_bps: Sequence[float],
        timestamp: float | None = None,
        period_s: float = 1.0,
        end_of_period: bool = True,
    ) -> None:
        self.send(
            controller_pb2.TelemetryBatch(
                timestamp_unix_s=time.time() if timestamp is None else timestamp,
                period_s=period_s,
                slices=slices,
                dl_bps=dl_bps,
                ul_bps=ul_bps,
                end_of_period=end_of_period,
            )
        )

    def send_ids(
        self,
        slice_ids: Sequence[int],
        dl_bps: Sequence[float],
        ul_bps: Sequence[float],
        timestamp: float | None = None,
        period_s: float = 1.0,
        end_of_period: bool = True,
    ) -> None:
        """Like :meth:`send_rates`, naming slices by index into the Hello's ``slice_table``."""
        self.send(
            controller_pb2.TelemetryBatch(
                timestamp_unix_s=time.time() if timestamp is None else timestamp,
                period_s=period_s,
                slice_ids=slice_ids,
                dl_bps=dl_bps,
                ul_bps=ul_bps,
                end_of_period=end_of_period,
            )
        )

    def close(self) -> None:
        """Half-close: the server ends the stream after the batches already sent."""
        self._queue.put(_CLOSE)

    def cancel(self) -> None:
        self.call.cancel()

    def __iter__(self) -> Iterator[controller_pb2.ServerMessage]:
        return iter(self.call)

    def plans(self) -> Iterator[common_pb2.Plan]:
        for msg in self.call:
            if msg.WhichOneof("kind") == "plan":
                yield msg.plan


class SliceaiClient:
    """Blocking client for every sliceai.v1 service plus health."""

    def __init__(
        self,
        target: str,
        ca: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        server_name: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        options: list[tuple[str, object]] = [("grpc.max_receive_message_length", 16 << 20)]
        if ca is None and cert is None:
            self.channel = grpc.insecure_channel(target, options=options)
        else:
            creds = grpc.ssl_channel_credentials(
                root_certificates=Path(ca).read_bytes() if ca else None,
                private_key=Path(key).read_bytes() if key else None,
                certificate_chain=Path(cert).read_bytes() if cert else None,
            )
            if server_name:
                options.append(("grpc.ssl_target_name_override", server_name))
            self.channel = grpc.secure_channel(target, creds, options=options)
        self.timeout_s = timeout_s
        # The generated stubs are untyped; each call below annotates what it returns.
        self.controller: Any = controller_pb2_grpc.ControllerServiceStub(self.channel)  # type: ignore[no-untyped-call]
        self.mec: Any = mec_pb2_grpc.MecServiceStub(self.channel)  # type: ignore[no-untyped-call]
        self.admin: Any = admin_pb2_grpc.AdminServiceStub(self.channel)  # type: ignore[no-untyped-call]
        self._health = health_pb2_grpc.HealthStub(self.channel)
        self._lock = threading.Lock()

    def __enter__(self) -> SliceaiClient:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    # -- health ----------------------------------------------------------------
    def health(self, service: str = "") -> str:
        """ "SERVING", "NOT_SERVING", ... for ``service`` ("" = the whole server)."""
        resp = self._health.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=self.timeout_s
        )
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))

    def wait_serving(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if self.health() == "SERVING":
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not SERVING after {timeout_s:g} s")
            time.sleep(0.05)

    # -- controller --------------------------------------------------------------
    def connect(
        self,
        source_id: str,
        datapath_ids: Sequence[int] = (),
        software: str = "",
        slice_table: Sequence[str] = (),
    ) -> ControllerStream:
        """Open a controller stream; ``slice_table`` lets batches name slices by index."""
        hello = controller_pb2.Hello(
            source_id=source_id,
            datapath_ids=datapath_ids,
            software=software,
            slice_table=slice_table,
        )
        return ControllerStream(self.controller, hello)

    # -- MEC -----------------------------------------------------------------------
    def push_kpm(
        self,
        source_id: str,
        records: Sequence[tuple[str, str, float]],
        timestamp: float | None = None,
        period_s: float = 1.0,
    ) -> int:
        """Push ``(measurement name, slice, value)`` records; returns the samples accepted."""
        report = mec_pb2.KpmReport(
            source_id=source_id,
            timestamp_unix_s=time.time() if timestamp is None else timestamp,
            granularity_period_s=period_s,
            records=[mec_pb2.KpmRecord(name=n, slice=s, value=v) for n, s, v in records],
        )
        return int(self.mec.PushTelemetry(report, timeout=self.timeout_s).accepted)

    def forecast(
        self, slices: Sequence[str] = (), horizon: int = 1, levels: Sequence[float] = ()
    ) -> mec_pb2.ForecastResponse:
        req = mec_pb2.ForecastRequest(slices=slices, horizon=horizon, levels=levels)
        resp: mec_pb2.ForecastResponse = self.mec.GetForecast(req, timeout=self.timeout_s)
        return resp

    def request_bandwidth(
        self,
        app_ins_id: str,
        slice_name: str,
        bps: float,
        direction: str = "both",
        session_filters: Sequence[mec_pb2.SessionFilter] = (),
        priority: int = 0,
        app_name: str = "",
    ) -> mec_pb2.BwAllocation:
        info = bw_info(app_ins_id, slice_name, bps, direction, session_filters, priority, app_name)
        resp: mec_pb2.BwAllocation = self.mec.RequestBandwidth(info, timeout=self.timeout_s)
        return resp

    def modify_bandwidth(self, allocation_id: str, info: mec_pb2.BwInfo) -> mec_pb2.BwAllocation:
        req = mec_pb2.ModifyBandwidthRequest(allocation_id=allocation_id, bw_info=info)
        resp: mec_pb2.BwAllocation = self.mec.ModifyBandwidth(req, timeout=self.timeout_s)
        return resp

    def release_bandwidth(self, allocation_id: str) -> mec_pb2.BwAllocation:
        req = mec_pb2.ReleaseBandwidthRequest(allocation_id=allocation_id)
        resp: mec_pb2.ReleaseBandwidthResponse = self.mec.ReleaseBandwidth(
            req, timeout=self.timeout_s
        )
        return resp.released

    def list_bandwidth(
        self, app_ins_id: str = "", slice_name: str = ""
    ) -> list[mec_pb2.BwAllocation]:
        req = mec_pb2.ListBandwidthRequest(app_ins_id=app_ins_id, slice=slice_name)
        return list(self.mec.ListBandwidth(req, timeout=self.timeout_s).allocations)

    def watch(self, slices: Sequence[str] = ()) -> Any:
        """A stream of :class:`common_pb2.Plan` (iterate it; ``.cancel()`` to stop)."""
        return self.mec.WatchAllocations(mec_pb2.WatchAllocationsRequest(slices=slices))

    # -- admin -------------------------------------------------------------------------
    def get_policy(self) -> admin_pb2.PolicyVersion:
        resp: admin_pb2.PolicyVersion = self.admin.GetPolicy(
            admin_pb2.GetPolicyRequest(), timeout=self.timeout_s
        )
        return resp

    def apply_policy(
        self, yaml_text: str, expected_version: int = 0, dry_run: bool = False
    ) -> admin_pb2.PolicyVersion:
        req = admin_pb2.ApplyPolicyRequest(
            yaml=yaml_text, expected_version=expected_version, dry_run=dry_run
        )
        resp: admin_pb2.PolicyVersion = self.admin.ApplyPolicy(req, timeout=self.timeout_s)
        return resp

    def list_policies(self, limit: int = 100) -> list[admin_pb2.PolicyVersion]:
        req = admin_pb2.ListPolicyVersionsRequest(limit=limit)
        return list(self.admin.ListPolicyVersions(req, timeout=self.timeout_s).versions)


def bw_info(
    app_ins_id: str,
    slice_name: str,
    bps: float,
    direction: str = "both",
    session_filters: Sequence[mec_pb2.SessionFilter] = (),
    priority: int = 0,
    app_name: str = "",
) -> mec_pb2.BwInfo:
    """A BwInfo: APPLICATION_SPECIFIC without filters, SESSION_SPECIFIC with them."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    return mec_pb2.BwInfo(
        app_ins_id=app_ins_id,
        app_name=app_name,
        request_type=mec_pb2.REQUEST_TYPE_SESSION_SPECIFIC
        if session_filters
        else mec_pb2.REQUEST_TYPE_APPLICATION_SPECIFIC,
        slice=slice_name,
        fixed_allocation_bps=int(bps),
        allocation_direction=DIRECTIONS[direction],
        fixed_bw_priority=priority,
        session_filter=session_filters,
    )
