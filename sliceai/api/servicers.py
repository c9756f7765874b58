"""gRPC servicers: check the caller, convert messages, call the engine, map errors.

Engine errors map one to one onto status codes (:data:`STATUS_OF`); anything
unexpected becomes INTERNAL with the error logged, and never reaches the
engine's state half-done (the engine validates before it changes anything).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

import grpc
import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError

from sliceai.api import convert, wire
from sliceai.api.auth import Authorizer
from sliceai.api.limits import CONTROLLER, WATCH, StreamGate
from sliceai.engine import (
    Conflict,
    Engine,
    EngineError,
    Exhausted,
    Forbidden,
    InvalidInput,
    NotFound,
    PlanRecord,
    Precondition,
    Unavailable,
)
from sliceai.engine.grants import IDENTIFIER
from sliceai.engine.telemetry import MAX_BATCH_SLICES
from sliceai.v1 import admin_pb2, controller_pb2, mec_pb2

log = logging.getLogger(__name__)

STATUS_OF: dict[type[EngineError], grpc.StatusCode] = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    Forbidden: grpc.StatusCode.PERMISSION_DENIED,
    Exhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Conflict: grpc.StatusCode.ALREADY_EXISTS,
    Precondition: grpc.StatusCode.FAILED_PRECONDITION,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
}
POLL_S = 0.05  # how often a stream handler checks for cancellation / errors
T = TypeVar("T")


def status_of(exc: EngineError) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return grpc.StatusCode.INTERNAL


def abort(context: grpc.ServicerContext, exc: BaseException) -> NoReturn:
    if isinstance(exc, EngineError):
        context.abort(status_of(exc), str(exc)[:4000] or type(exc).__name__)
    log.exception("internal error", exc_info=exc)
    context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")


def guarded(context: grpc.ServicerContext, fn: Callable[[], T]) -> T:
    """Run ``fn``; engine errors become their status, others INTERNAL."""
    try:
        return fn()
    except EngineError as exc:
        abort(context, exc)
    except (ValueError, TypeError, OverflowError) as exc:
        abort(context, InvalidInput(str(exc)))
    except Exception as exc:
        abort(context, exc)  # INTERNAL, logged; never an unexplained UNKNOWN


class PlanCache:
    """Serialised plan messages, built once per (plan, view) and shared by every stream."""

    def __init__(self) -> None:
        self._version = -1
        self._items: dict[Any, bytes] = {}
        self._lock = threading.Lock()

    def get(self, plan: PlanRecord, key: Any, build: Callable[[], bytes]) -> bytes:
        with self._lock:
            if plan.version != self._version:
                self._version, self._items = plan.version, {}
            hit = self._items.get(key)
        if hit is None:
            hit = build()
            with self._lock:
                if plan.version == self._version and len(self._items) < 1024:
                    self._items[key] = hit
        return hit


class ControllerServicer:
    """sliceai.v1.ControllerService."""

    def __init__(
        self, engine: Engine, auth: Authorizer, streams: StreamGate, cache: PlanCache
    ) -> None:
        self.engine = engine
        self.auth = auth
        self.streams = streams
        self.cache = cache

    def Connect(
        self,
        request_iterator: Iterator[bytes],
        context: grpc.ServicerContext,
    ) -> Iterator[bytes]:
        """Admitted (stream limits) before the Hello, which must come within
        ``Limits.hello_timeout_s``; then a reader thread ingests while this one sends plans."""
        caller = self.auth.check(context, "ControllerService.Connect")
        key = self.auth.rate_key(caller, context)
        guarded(context, lambda: self.streams.enter(CONTROLLER, caller, key))
        try:
            yield from self._serve(key, request_iterator, context)
        finally:
            self.streams.leave(CONTROLLER, caller, key)

    def _hello(
        self, raw: bytes | None, context: grpc.ServicerContext
    ) -> tuple[str, SliceTable | None]:
        """The stream's source id and slice table from its first message; aborts otherwise."""
        first = None if raw is None else _parse_or_none(raw)
        if first is None or first.WhichOneof("kind") != "hello":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be a Hello")
        source = first.hello.source_id
        if not IDENTIFIER.match(source):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "hello.source_id: 1..128 characters of [A-Za-z0-9._:-]",
            )
        names = tuple(first.hello.slice_table)
        guarded(context, lambda: self.engine.buffer.check_rows(len(names)))
        return source, SliceTable(names) if names else None

    def _serve(
        self, key: str, requests: Iterator[bytes], context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        failure: list[BaseException] = []
        first: list[bytes | None] = []
        hello = threading.Event()  # the first message (or the end) arrived
        go = threading.Event()  # the Hello was checked: ingest (if ``stream`` is set)
        stream: list[tuple[str, SliceTable | None]] = []
        done = threading.Event()
        limiter = self.auth.limiter
        engine = self.engine

        def admit() -> None:
            if not limiter.allow(key):
                raise Exhausted("rate limit exceeded; send fewer, larger batches")

        def read() -> None:
            try:
                first.append(next(requests, None))
                hello.set()
                go.wait()
                if not stream:
                    return
                source, table = stream[0]
                for raw in requests:
                    ingest_message(engine, source, table, raw, admit)
            except grpc.RpcError:
                pass  # the client went away
            except BaseException as exc:
                failure.append(exc)
            finally:
                hello.set()
                done.set()

        reader = threading.Thread(target=read, name="ingest", daemon=True)
        reader.start()
        try:
            if not hello.wait(engine.limits.hello_timeout_s):
                abort(
                    context,
                    engine.limit_hits.hit(
                        "hello_timeout_s",
                        f"no Hello within {engine.limits.hello_timeout_s:g} s of connecting",
                    ),
                )
            stream.append(self._hello(first[0] if first else None, context))
        finally:
            go.set()
        sent_policy = engine.policy_record
        yield convert.policy_update(sent_policy).SerializeToString()
        seen = 0
        while context.is_active() and not done.is_set():
            plan = engine.hub.wait_newer(seen, POLL_S)
            if engine.hub.closed:
                break
            if plan is None:
                continue
            seen = plan.version
            record = engine.policy_record
            if record.version != sent_policy.version and plan.policy_version == record.version:
                sent_policy = record
                yield convert.policy_update(record).SerializeToString()
            yield self.cache.get(plan, "controller", functools.partial(_plan_message, plan))
        if failure:
            exc = failure[0]
            if isinstance(exc, (ValueError, TypeError, OverflowError)) and not isinstance(
                exc, EngineError
            ):
                exc = InvalidInput(str(exc))
            abort(context, exc)


class SliceTable:
    """A stream's Hello.slice_table, with its id lists by their packed wire bytes.

    A controller sends the same ``slice_ids`` in every batch, so the bytes of
    the packed field key a small cache of read-only int64 arrays. Only ids that
    protobuf parsed are entered (:meth:`remember`), so a hit is both valid wire
    data and exactly what protobuf would read.
    """

    MAX_BYTES = 1 << 20  # keys and arrays cached per stream

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self._ids: dict[bytes, npt.NDArray[np.int64]] = {}
        self._bytes = 0

    def get(self, key: bytes) -> npt.NDArray[np.int64] | None:
        return self._ids.get(key)

    def remember(self, key: bytes, ids: npt.NDArray[np.int64]) -> None:
        """Enter ``ids``, protobuf's parse of the packed field whose payload is ``key``."""
        if len(ids) > MAX_BATCH_SLICES:  # refused anyway: not worth keeping
            return
        ids.flags.writeable = False
        size = len(key) + ids.nbytes
        if self._bytes + size > self.MAX_BYTES:
            self._ids.clear()
            self._bytes = 0
        self._bytes += size
        self._ids[key] = ids


def _parse_or_none(raw: bytes) -> controller_pb2.ControllerMessage | None:
    try:
        return controller_pb2.ControllerMessage.FromString(raw)
    except DecodeError:
        return None


def ingest_message(
    engine: Engine,
    source: str,
    table: SliceTable | None,
    raw: bytes,
    admit: Callable[[], None],
) -> int:
    """Validate and ingest one ControllerMessage after the Hello (``raw``: its wire bytes).

    ``admit`` is called once the message is known to be telemetry, before it is
    ingested (the rate limit). The common shape of batch is read from the bytes
    (:func:`wire.parse_telemetry`); anything else is parsed with protobuf.
    Both ingest the same values and raise the same errors.
    """
    fast = wire.parse_telemetry(raw)
    ids = None
    if fast is not None and fast[5] and table is not None:
        ids = table.get(fast[5])
    if fast is None or (fast[5] and ids is None):
        msg = _parse_or_none(raw)
        if msg is None:
            raise InvalidInput("malformed ControllerMessage")
        if msg.WhichOneof("kind") != "telemetry":
            raise InvalidInput("only telemetry may follow the Hello")
        admit()
        remember = None
        if fast is not None and table is not None:  # only the ids were unknown
            remember = functools.partial(table.remember, fast[5])
        return ingest_batch(engine, source, table, msg.telemetry, remember)
    admit()
    ts, period, end, dl, ul, _ = fast
    if ids is None:  # no slice_ids (and no names: batches with names are parsed)
        return engine.ingest(source, ts, period, (), dl, ul, end)
    assert table is not None
    return engine.ingest(source, ts, period, ids, dl, ul, end, table.names)


def ingest_batch(
    engine: Engine,
    source: str,
    table: SliceTable | None,
    batch: controller_pb2.TelemetryBatch,
    remember: Callable[[npt.NDArray[np.int64]], None] | None = None,
) -> int:
    """Validate and ingest one parsed TelemetryBatch.

    ``remember``: called with the parsed ``slice_ids`` (see :class:`SliceTable`).
    """
    dl = np.array(batch.dl_bps, dtype=np.float64)
    ul = np.array(batch.ul_bps, dtype=np.float64)
    n = len(dl)
    if batch.dl_dropped_bytes or batch.ul_dropped_bytes:
        if len(batch.dl_dropped_bytes) != n or len(batch.ul_dropped_bytes) != n:
            raise InvalidInput("dropped-bytes columns must be empty or one per slice")
        if batch.period_s > 0:  # dropped bytes are unmet demand: bit/s over the period
            dl = dl + 8.0 * np.array(batch.dl_dropped_bytes, dtype=np.float64) / batch.period_s
            ul = ul + 8.0 * np.array(batch.ul_dropped_bytes, dtype=np.float64) / batch.period_s
    ts, period, end = batch.timestamp_unix_s, batch.period_s, batch.end_of_period
    if not batch.slice_ids:
        return engine.ingest(source, ts, period, batch.slices, dl, ul, end)
    if batch.slices:
        raise InvalidInput("give slices or slice_ids, not both")
    if table is None:
        raise InvalidInput("slice_ids need a slice_table in the Hello")
    ids = np.array(batch.slice_ids, dtype=np.int64)
    if remember is not None:
        remember(ids)
    return engine.ingest(source, ts, period, ids, dl, ul, end, table.names)


def _watch_message(plan: PlanRecord, wanted: tuple[str, ...], own: str | None) -> bytes:
    return convert.plan_to_proto(plan, wanted or None, own).SerializeToString()


def _plan_message(plan: PlanRecord) -> bytes:
    return controller_pb2.ServerMessage(plan=convert.plan_to_proto(plan)).SerializeToString()


class MecServicer:
    """sliceai.v1.MecService."""

    def __init__(
        self, engine: Engine, auth: Authorizer, streams: StreamGate, cache: PlanCache
    ) -> None:
        self.engine = engine
        self.auth = auth
        self.streams = streams
        self.cache = cache

    def PushTelemetry(
        self, request: mec_pb2.KpmReport, context: grpc.ServicerContext
    ) -> mec_pb2.PushTelemetryResponse:
        caller = self.auth.check(context, "MecService.PushTelemetry")
        owner = self.auth.rate_key(caller, context)
        if not IDENTIFIER.match(request.source_id):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "source_id: 1..128 characters of [A-Za-z0-9._:-]"
            )
        n = guarded(
            context,
            lambda: self.engine.ingest_kpm(
                request.source_id,
                request.timestamp_unix_s,
                request.granularity_period_s,
                convert.kpm_records(request.records, self.engine.policy),
                owner,
            ),
        )
        return mec_pb2.PushTelemetryResponse(accepted=n)

    def GetForecast(
        self, request: mec_pb2.ForecastRequest, context: grpc.ServicerContext
    ) -> mec_pb2.ForecastResponse:
        self.auth.check(context, "MecService.GetForecast")
        result = guarded(
            context,
            lambda: self.engine.forecast(  # not list(): an oversized request is refused first
                request.slices, request.horizon, list(request.levels)
            ),
        )
        return convert.forecast_response(result)

    def RequestBandwidth(
        self, request: mec_pb2.BwInfo, context: grpc.ServicerContext
    ) -> mec_pb2.BwAllocation:
        caller = self.auth.check(context, "MecService.RequestBandwidth")
        grant = guarded(
            context, lambda: self.engine.request_grant(caller, convert.bw_request(request))
        )
        return convert.bw_allocation(grant)

    def ModifyBandwidth(
        self, request: mec_pb2.ModifyBandwidthRequest, context: grpc.ServicerContext
    ) -> mec_pb2.BwAllocation:
        caller = self.auth.check(context, "MecService.ModifyBandwidth")
        grant = guarded(
            context,
            lambda: self.engine.modify_grant(
                caller, request.allocation_id, convert.bw_request(request.bw_info)
            ),
        )
        return convert.bw_allocation(grant)

    def ReleaseBandwidth(
        self, request: mec_pb2.ReleaseBandwidthRequest, context: grpc.ServicerContext
    ) -> mec_pb2.ReleaseBandwidthResponse:
        caller = self.auth.check(context, "MecService.ReleaseBandwidth")
        grant = guarded(context, lambda: self.engine.release_grant(caller, request.allocation_id))
        return mec_pb2.ReleaseBandwidthResponse(released=convert.bw_allocation(grant))

    def ListBandwidth(
        self, request: mec_pb2.ListBandwidthRequest, context: grpc.ServicerContext
    ) -> mec_pb2.ListBandwidthResponse:
        caller = self.auth.check(context, "MecService.ListBandwidth")
        grants = guarded(
            context, lambda: self.engine.grants(caller, request.app_ins_id, request.slice)
        )
        return mec_pb2.ListBandwidthResponse(allocations=[convert.bw_allocation(g) for g in grants])

    def WatchAllocations(
        self, request: mec_pb2.WatchAllocationsRequest, context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        caller = self.auth.check(context, "MecService.WatchAllocations")
        wanted = tuple(request.slices)
        policy = self.engine.policy
        unknown = [s for s in wanted if s not in policy.slice_names]
        if unknown:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown slice {unknown[0][:64]!r}")
        own = None if caller.role in ("admin", "controller") else caller.identity
        key = self.auth.rate_key(caller, context)
        guarded(context, lambda: self.streams.enter(WATCH, caller, key))
        try:
            seen = 0
            hub = self.engine.hub
            view = ("watch", wanted, own)
            while context.is_active() and not hub.closed:
                plan = hub.wait_newer(seen, POLL_S)
                if plan is None:
                    continue
                seen = plan.version
                yield self.cache.get(
                    plan, view, functools.partial(_watch_message, plan, wanted, own)
                )
        finally:
            self.streams.leave(WATCH, caller, key)


class AdminServicer:
    """sliceai.v1.AdminService."""

    def __init__(self, engine: Engine, auth: Authorizer) -> None:
        self.engine = engine
        self.auth = auth

    def GetPolicy(
        self, request: admin_pb2.GetPolicyRequest, context: grpc.ServicerContext
    ) -> admin_pb2.PolicyVersion:
        self.auth.check(context, "AdminService.GetPolicy")
        return convert.policy_version(self.engine.policy_record)

    def ApplyPolicy(
        self, request: admin_pb2.ApplyPolicyRequest, context: grpc.ServicerContext
    ) -> admin_pb2.PolicyVersion:
        caller = self.auth.check(context, "AdminService.ApplyPolicy")
        record = guarded(
            context,
            lambda: self.engine.apply_policy(
                request.yaml, caller, request.expected_version, request.dry_run
            ),
        )
        return convert.policy_version(record)

    def ListPolicyVersions(
        self, request: admin_pb2.ListPolicyVersionsRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ListPolicyVersionsResponse:
        self.auth.check(context, "AdminService.ListPolicyVersions")
        limit = min(int(request.limit) or 100, 1000)
        records = self.engine.store.list_policies(limit)
        return admin_pb2.ListPolicyVersionsResponse(
            versions=[convert.policy_version(r, False) for r in records]
        )
