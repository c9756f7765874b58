"""A real server on an ephemeral loopback port: streams both ways, many clients, health, reflection."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from sliceai.api.client import SliceaiClient
from sliceai.v1 import common_pb2

NAMES = ["surgery-haptics", "surgery-video", "consults", "vitals", "staff-embb"]


def _next_plan(stream_iter: object, after: int = 0) -> common_pb2.Plan:
    for msg in stream_iter:  # type: ignore[attr-defined]
        if msg.WhichOneof("kind") == "plan" and msg.plan.version > after:
            return msg.plan
    raise AssertionError("stream ended without a plan")


def test_controller_stream_gets_policy_then_plans_reflecting_its_telemetry(
    client: SliceaiClient,
) -> None:
    stream = client.connect("osken-1", datapath_ids=[1])
    messages = iter(stream)
    first = next(messages)
    assert first.WhichOneof("kind") == "policy"
    assert first.policy.version == 1
    assert "surgery-haptics" in first.policy.yaml
    seen = 0
    for _ in range(30):
        stream.send_rates(NAMES, [40e6] * 5, [10e6] * 5)
        plan = _next_plan(messages, seen)
        seen = plan.version
        if plan.slices[4].measured_dl_bps == 40e6:
            break
    assert plan.slices[4].measured_dl_bps == 40e6
    assert plan.slices[4].dl_bps >= 40e6 * 0.99
    assert [s.slice for s in plan.slices] == NAMES
    assert {link.link for link in plan.links} == {"cell-backhaul", "mec-uplink"}
    stream.cancel()


def test_dropped_bytes_count_as_demand(client: SliceaiClient) -> None:
    from sliceai.v1 import controller_pb2

    stream = client.connect("osken-2")
    messages = iter(stream)
    next(messages)
    batch = controller_pb2.TelemetryBatch(
        timestamp_unix_s=time.time(),
        period_s=1.0,
        slices=["consults"],
        dl_bps=[1e6],
        ul_bps=[1e6],
        dl_dropped_bytes=[125_000],  # 1 Mbit over 1 s
        ul_dropped_bytes=[0],
        end_of_period=True,
    )
    seen = 0
    for _ in range(30):
        stream.send(batch)
        plan = _next_plan(messages, seen)
        seen = plan.version
        if plan.slices[2].measured_dl_bps == 2e6:
            break
    assert plan.slices[2].measured_dl_bps == 2e6
    assert plan.slices[2].measured_ul_bps == 1e6
    stream.cancel()


def test_bad_batch_ends_the_stream_with_not_found(client: SliceaiClient) -> None:
    stream = client.connect("osken-3")
    messages = iter(stream)
    next(messages)
    stream.send_rates(["no-such-slice"], [1.0], [1.0])
    with pytest.raises(grpc.RpcError) as info:
        for _ in messages:
            pass
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-slice" in info.value.details()


def test_first_message_must_be_hello(client: SliceaiClient) -> None:
    from sliceai.v1 import controller_pb2

    call = client.controller.Connect(
        iter([controller_pb2.ControllerMessage(telemetry=controller_pb2.TelemetryBatch())])
    )
    with pytest.raises(grpc.RpcError) as info:
        list(call)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_many_concurrent_controllers_and_watchers(start_server: Callable[..., Any]) -> None:
    running = start_server(interval_s=0.05)
    n_controllers, n_watchers = 12, 12
    errors: list[BaseException] = []
    watcher_plans: list[int] = [0] * n_watchers

    def controller(i: int) -> None:
        try:
            with SliceaiClient(running.target) as c:
                stream = c.connect(f"ctl-{i}")
                msgs = iter(stream)
                next(msgs)
                for k in range(5):
                    stream.send_rates([NAMES[i % 5]], [1e6 * (i + 1)], [1e5 * (k + 1)])
                    _next_plan(msgs)
                stream.cancel()
        except BaseException as exc:
            errors.append(exc)

    def watcher(i: int) -> None:
        try:
            with SliceaiClient(running.target) as c:
                call = c.watch()
                for plan in call:
                    watcher_plans[i] += 1
                    assert len(plan.slices) == 5
                    if watcher_plans[i] >= 3:
                        call.cancel()
                        break
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                errors.append(exc)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=controller, args=(i,)) for i in range(n_controllers)]
    threads += [threading.Thread(target=watcher, args=(i,)) for i in range(n_watchers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    assert watcher_plans == [3] * n_watchers
    sources = running.engine.buffer.sources()
    assert {f"ctl-{i}" for i in range(n_controllers)} <= set(sources)


def test_watch_filters_slices_and_rejects_unknown(client: SliceaiClient) -> None:
    call = client.watch(["vitals"])
    plan = next(iter(call))
    call.cancel()
    assert [s.slice for s in plan.slices] == ["vitals"]
    bad = client.watch(["nope"])
    with pytest.raises(grpc.RpcError) as info:
        next(iter(bad))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_serving_and_reflection_lists_services(client: SliceaiClient) -> None:
    health = health_pb2_grpc.HealthStub(client.channel)
    for service in (
        "",
        "sliceai.v1.ControllerService",
        "sliceai.v1.MecService",
        "sliceai.v1.AdminService",
    ):
        resp = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(client.channel)
    responses = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {
        "sliceai.v1.ControllerService",
        "sliceai.v1.MecService",
        "sliceai.v1.AdminService",
    } <= names
    assert "grpc.health.v1.Health" in names


def test_kpm_push_feeds_the_plan(client: SliceaiClient) -> None:
    n = client.push_kpm(
        "e2-node-1",
        [
            ("DRB.UEThpDl", "consults", 3000.0),  # kbit/s
            ("DRB.UEThpUl", "1-0000B1", 1000.0),  # by S-NSSAI
            ("DRB.PdcpSduVolumeDL", "vitals", 2.0),  # Mbit over 1 s
            ("RRU.PrbUsedDl", "vitals", 12.0),
        ],
    )
    assert n == 2
    call = client.watch()
    for plan in call:
        if plan.slices[2].measured_dl_bps == 3e6:
            break
    call.cancel()
    assert plan.slices[2].measured_ul_bps == 1e6
    assert plan.slices[3].measured_dl_bps == 2e6


def test_forecast_and_policy_queries(client: SliceaiClient) -> None:
    f = client.forecast(["consults"], horizon=3, levels=[0.5, 0.9])
    assert f.horizon == 3
    assert list(f.levels) == [0.5, 0.9]
    assert len(f.slices[0].dl_bps) == 6
    with pytest.raises(grpc.RpcError) as info:
        client.forecast(["nope"])
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as info:
        client.forecast(levels=[1.5])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert client.get_policy().version == 1


def test_stream_with_a_slice_table_sends_indices(client: SliceaiClient) -> None:
    stream = client.connect("osken-table", slice_table=["vitals", "consults"])
    messages = iter(stream)
    next(messages)
    seen = 0
    for _ in range(30):
        stream.send_ids([1, 0], [7e6, 1e6], [2e6, 3e6])
        plan = _next_plan(messages, seen)
        seen = plan.version
        if plan.slices[2].measured_dl_bps == 7e6:
            break
    assert plan.slices[2].measured_dl_bps == 7e6
    assert plan.slices[3].measured_ul_bps == 3e6
    stream.send_ids([2], [1.0], [1.0])
    with pytest.raises(grpc.RpcError) as info:
        for _ in messages:
            pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
