"""Per-caller limits over real gRPC on loopback (issue #29): stream budgets by kind, role and
identity, the Hello deadline, a worker pool that streams cannot starve, request sizes, and
every refusal counted in ``sliceai_limit_hits_total{limit}``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from sliceai.api.client import SliceaiClient
from sliceai.api.limits import Limits
from sliceai.api.metrics import ServiceMetrics
from sliceai.api.server import ServerSettings, SliceaiServer, TlsFiles
from sliceai.engine import Engine, EngineSettings, StateStore
from sliceai.planning import RollingQuantileForecaster
from sliceai.v1 import controller_pb2, mec_pb2

EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


class Served:
    def __init__(self, engine: Engine, server: SliceaiServer, metrics: ServiceMetrics) -> None:
        self.engine, self.server, self.metrics = engine, server, metrics
        self.target = f"127.0.0.1:{server.port}"

    def hits(self, limit: str) -> float:
        value = self.metrics.registry.get_sample_value("sliceai_limit_hits_total", {"limit": limit})
        return value or 0.0


@pytest.fixture
def serve(tmp_path: Path, policy_text: str) -> Iterator[Callable[..., Served]]:
    """Factory: a server on 127.0.0.1:0 with ``Limits(**limits)``; stopped at teardown."""
    started: list[Served] = []

    def start(tls: TlsFiles | None = None, allow_anonymous: bool = False, **limits: Any) -> Served:
        store = StateStore(tmp_path / f"limits{len(started)}.db")
        settings = EngineSettings(interval_s=0.1, limits=Limits(**limits))
        engine = Engine(store, policy_text, RollingQuantileForecaster(), settings=settings)
        metrics = ServiceMetrics()
        metrics.attach(engine)
        extra = {"allow_anonymous": True} if allow_anonymous else {}
        server = SliceaiServer(engine, ServerSettings("127.0.0.1:0", tls, **extra))
        server.start()
        started.append(Served(engine, server, metrics))
        return started[-1]

    yield start
    for s in started:
        s.server.stop(grace_s=0.5)
        s.engine.store.close()


def _code(fn: Callable[[], object]) -> grpc.StatusCode:
    try:
        fn()
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _first_plan(stream: Any) -> Any:
    for msg in stream:
        if msg.WhichOneof("kind") == "plan":
            return msg.plan
    raise AssertionError("stream ended without a plan")


def test_watchers_cannot_take_the_controllers_streams(serve: Callable[..., Served]) -> None:
    """One caller holding every watch stream: watchers are refused, controllers still connect."""
    s = serve(watch_streams=3, anonymous_streams=1, controller_streams=2)
    with SliceaiClient(s.target, timeout_s=5) as c:
        watchers = [c.watch() for _ in range(3)]
        for w in watchers:
            next(iter(w))  # admitted: a plan arrived
        assert _code(lambda: next(iter(c.watch()))) == EXHAUSTED
        stream = c.connect("osken-1")
        plan = _first_plan(stream)
        assert plan.version >= 1
        stream.cancel()
        for w in watchers:
            w.cancel()
    assert s.engine.limit_hits.count("watch_streams") == 1
    assert s.hits("watch_streams") == 1


class _Silent:
    """A Connect request iterator that sends nothing until ``release``."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def __iter__(self) -> Iterator[controller_pb2.ControllerMessage]:
        self.release.wait(30)
        return
        yield  # a generator


def test_connects_without_hello_end_at_the_deadline_and_never_starve_health(
    serve: Callable[..., Served],
) -> None:
    """Hello-less Connects hold at most controller_streams workers, each for hello_timeout_s."""
    s = serve(
        controller_streams=3,
        watch_streams=1,
        anonymous_streams=1,
        unary_workers=2,
        hello_timeout_s=2.0,
    )
    silent = _Silent()
    outcomes: list[tuple[grpc.StatusCode, str, float]] = []
    lock = threading.Lock()
    with SliceaiClient(s.target, timeout_s=5) as c:

        def hold() -> None:
            started = time.monotonic()
            try:
                list(c.controller.Connect(iter(silent)))
                result = (grpc.StatusCode.OK, "", 0.0)
            except grpc.RpcError as exc:
                result = (exc.code(), exc.details() or "", time.monotonic() - started)
            with lock:
                outcomes.append(result)

        threads = [threading.Thread(target=hold) for _ in range(12)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(outcomes) < 9:
            time.sleep(0.01)
        # 9 refused at once; 3 hold their workers, waiting for a Hello: health still answers
        assert len(outcomes) == 9, outcomes
        assert c.health() == "SERVING"
        for t in threads:
            t.join(10)
        silent.release.set()
    assert all(code == EXHAUSTED for code, _, _ in outcomes), outcomes
    held = [o for o in outcomes if "no Hello" in o[1]]
    assert len(held) == 3
    assert all(1.9 <= elapsed < 10 for _, _, elapsed in held)
    assert s.engine.limit_hits.count("hello_timeout_s") == 3
    assert s.hits("hello_timeout_s") == 3


def test_streams_per_identity_over_mutual_tls(serve: Callable[..., Served], pki: Any) -> None:
    tls = TlsFiles(pki.server_cert, pki.server_key, pki.ca)
    s = serve(tls=tls, streams_per_identity=2)

    def client(name: str) -> SliceaiClient:
        cert, key = pki.client(name)
        return SliceaiClient(
            s.target, ca=pki.ca, cert=cert, key=key, server_name="localhost", timeout_s=5
        )

    with client("controller") as ctl, client("admin") as adm:
        streams = [ctl.connect(f"sw-{k}") for k in range(2)]
        for st in streams:
            _first_plan(st)
        third = ctl.connect("sw-2")
        assert _code(lambda: _first_plan(third)) == EXHAUSTED
        other = adm.connect("sw-admin")  # another identity is not hurt
        _first_plan(other)
        other.cancel()
        streams[0].cancel()
        deadline = time.monotonic() + 5
        again = None
        while time.monotonic() < deadline:  # the slot frees once the server sees the cancel
            again = ctl.connect("sw-3")
            if _code(lambda stream=again: _first_plan(stream)) == grpc.StatusCode.OK:
                break
            time.sleep(0.05)
        assert again is not None
        again.cancel()
        streams[1].cancel()
    assert s.engine.limit_hits.count("streams_per_identity") >= 1


def test_oversized_forecasts_are_refused_and_counted(serve: Callable[..., Served]) -> None:
    s = serve()
    time.sleep(0.2)  # a plan or two
    with SliceaiClient(s.target, timeout_s=5) as c:
        assert len(c.forecast(["consults"] * 64, horizon=64, levels=[0.5]).slices) == 64
        assert _code(lambda: c.forecast(["consults"] * 65)) == EXHAUSTED
        assert _code(lambda: c.forecast(["consults"], horizon=65)) == EXHAUSTED
    assert s.hits("forecast_slices") == 1
    assert s.hits("forecast_horizon") == 1


def test_oversized_requests_are_refused_before_they_are_decoded(
    serve: Callable[..., Served],
) -> None:
    s = serve()
    time.sleep(0.2)
    with SliceaiClient(s.target, timeout_s=10) as c:
        # 85,000 slice names (about 850 KB): refused on its size, never parsed
        assert _code(lambda: c.forecast(["consults"] * 85_000)) == EXHAUSTED
        # a KPM report may be larger: up to 256 bytes per batch row
        report = mec_pb2.KpmReport(
            source_id="kpm-1",
            timestamp_unix_s=time.time(),
            granularity_period_s=1.0,
            records=[
                mec_pb2.KpmRecord(name="DRB.UEThpDl", slice="consults", value=1.0)
                for _ in range(4000)
            ],
        )
        assert report.ByteSize() > 64 << 10
        c.mec.PushTelemetry(report, timeout=10)
    assert s.hits("request_bytes") == 1
    assert s.hits("forecast_slices") == 0


def test_a_batch_summing_past_the_rate_ceiling_is_invalid(serve: Callable[..., Served]) -> None:
    s = serve()
    with SliceaiClient(s.target, timeout_s=5) as c:
        stream = c.connect("summer")
        it = iter(stream)
        next(it)
        stream.send_rates(["consults"] * 4096, [9e12] * 4096, [0.0] * 4096)
        with pytest.raises(grpc.RpcError) as info:
            for _ in it:
                pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "summer" not in s.engine.buffer.sources()


def test_kpm_sources_per_identity(serve: Callable[..., Served]) -> None:
    s = serve(sources_per_identity=3)
    with SliceaiClient(s.target, timeout_s=5) as c:
        codes = [
            _code(lambda k=k: c.push_kpm(f"ran-{k}", [("DRB.UEThpDl", "consults", 1.0)]))
            for k in range(5)
        ]  # type: ignore[misc]
    assert codes == [grpc.StatusCode.OK] * 3 + [EXHAUSTED] * 2
    assert s.hits("sources_per_identity") == 2
    measured = s.engine.buffer.latest("ran-0", ["consults"])
    np.testing.assert_array_equal(measured[:, 0], [1e3])


def test_modify_into_a_copy_of_another_grant_is_already_exists(
    serve: Callable[..., Served],
) -> None:

    s = serve()
    with SliceaiClient(s.target, timeout_s=5) as c:

        def bw(direction: int) -> mec_pb2.BwInfo:
            return mec_pb2.BwInfo(
                app_ins_id="app-1",
                request_type=mec_pb2.REQUEST_TYPE_APPLICATION_SPECIFIC,
                slice="consults",
                fixed_allocation_bps=1_000_000,
                allocation_direction=direction,
            )

        dl, ul = mec_pb2.ALLOCATION_DIRECTION_DOWNLINK, mec_pb2.ALLOCATION_DIRECTION_UPLINK
        c.mec.RequestBandwidth(bw(dl), timeout=5)
        second = c.mec.RequestBandwidth(bw(ul), timeout=5)
        code = _code(
            lambda: c.mec.ModifyBandwidth(
                mec_pb2.ModifyBandwidthRequest(allocation_id=second.allocation_id, bw_info=bw(dl)),
                timeout=5,
            )
        )
    assert code == grpc.StatusCode.ALREADY_EXISTS
