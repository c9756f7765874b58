"""Hypothesis-generated bad messages: a precise status code, never a crash, never a state change."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sliceai.api.client import SliceaiClient
from sliceai.engine import LOCAL_ADMIN
from sliceai.v1 import admin_pb2, controller_pb2, mec_pb2

NAMES = ["surgery-haptics", "surgery-video", "consults", "vitals", "staff-embb"]
REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
}
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

bad_rate = st.sampled_from([-1.0, -1e-9, math.nan, math.inf, -math.inf, 1e14, 1e300])
good_rate = st.floats(min_value=0, max_value=1e9)
slice_name = st.one_of(st.sampled_from(NAMES), st.text(max_size=20))


@st.composite
def bad_batches(draw: st.DrawFn) -> controller_pb2.TelemetryBatch:
    n = draw(st.integers(1, 6))
    names = draw(st.lists(st.sampled_from(NAMES), min_size=n, max_size=n))
    dl = draw(st.lists(good_rate, min_size=n, max_size=n))
    ul = draw(st.lists(good_rate, min_size=n, max_size=n))
    ts, period = time.time(), 1.0
    flaw = draw(st.sampled_from(["rate", "slice", "time", "period", "ragged"]))
    if flaw == "rate":
        dl[draw(st.integers(0, n - 1))] = draw(bad_rate)
    elif flaw == "slice":
        names[draw(st.integers(0, n - 1))] = draw(
            st.text(min_size=1, max_size=30).filter(lambda s: s not in NAMES)
        )
    elif flaw == "time":
        offsets = st.one_of(st.floats(400, 1e12), st.floats(-1e12, -400), st.just(math.nan))
        ts = ts + draw(offsets)
    elif flaw == "period":
        period = draw(
            st.one_of(st.floats(max_value=0), st.floats(min_value=901), st.just(math.nan))
        )
    else:
        ul = [*ul, 1.0]
    return controller_pb2.TelemetryBatch(
        timestamp_unix_s=ts, period_s=period, slices=names, dl_bps=dl, ul_bps=ul, end_of_period=True
    )


TABLE = [*NAMES, "retired-slice"]


@st.composite
def bad_id_batches(draw: st.DrawFn) -> controller_pb2.TelemetryBatch:
    """Like :func:`bad_batches`, naming slices by index into :data:`TABLE`."""
    n = draw(st.integers(1, 6))
    ids = draw(st.lists(st.integers(0, len(NAMES) - 1), min_size=n, max_size=n))
    dl = draw(st.lists(good_rate, min_size=n, max_size=n))
    ul = draw(st.lists(good_rate, min_size=n, max_size=n))
    ts, period, names = time.time(), 1.0, []
    flaw = draw(
        st.sampled_from(["rate", "ul", "id", "retired", "time", "period", "ragged", "both"])
    )
    if flaw in ("rate", "ul"):
        (dl if flaw == "rate" else ul)[draw(st.integers(0, n - 1))] = draw(bad_rate)
    elif flaw == "id":
        ids[draw(st.integers(0, n - 1))] = draw(st.integers(len(TABLE), 2**32 - 1))
    elif flaw == "retired":
        ids[draw(st.integers(0, n - 1))] = len(TABLE) - 1
    elif flaw == "time":
        ts = ts + draw(st.one_of(st.floats(400, 1e12), st.floats(-1e12, -400), st.just(math.nan)))
    elif flaw == "period":
        period = draw(
            st.one_of(st.floats(max_value=0), st.floats(min_value=901), st.just(math.nan))
        )
    elif flaw == "ragged":
        dl = [*dl, 1.0]
    else:
        names = [NAMES[0]]
    return controller_pb2.TelemetryBatch(
        timestamp_unix_s=ts,
        period_s=period,
        slices=names,
        slice_ids=ids,
        dl_bps=dl,
        ul_bps=ul,
        end_of_period=draw(st.booleans()),
    )


@st.composite
def bad_bw_infos(draw: st.DrawFn) -> mec_pb2.BwInfo:
    info = mec_pb2.BwInfo(
        app_ins_id="app-1",
        request_type=mec_pb2.REQUEST_TYPE_APPLICATION_SPECIFIC,
        slice="consults",
        fixed_allocation_bps=1_000_000,
        allocation_direction=mec_pb2.ALLOCATION_DIRECTION_BOTH,
    )
    flaw = draw(
        st.sampled_from(["app", "type", "slice", "rate", "direction", "prio", "filter", "session"])
    )
    if flaw == "app":
        info.app_ins_id = draw(
            st.text(max_size=200).filter(lambda s: not s or len(s) > 128 or " " in s or "/" in s)
        )
    elif flaw == "type":
        info.request_type = draw(st.sampled_from([0, 3, 77]))
    elif flaw == "slice":
        info.slice = draw(
            st.text(max_size=20).filter(lambda s: s not in NAMES and s.upper() != "1-0000B1")
        )
    elif flaw == "rate":
        info.fixed_allocation_bps = draw(st.sampled_from([0, 10**12 + 1, 2**64 - 1, 10**15]))
    elif flaw == "direction":
        info.allocation_direction = draw(st.sampled_from([0, 4, 99]))
    elif flaw == "prio":
        info.fixed_bw_priority = draw(st.integers(256, 2**32 - 1))
    elif flaw == "filter":
        info.session_filter.add(protocol="UDP")  # filters on an application-specific request
    else:
        info.request_type = mec_pb2.REQUEST_TYPE_SESSION_SPECIFIC
        info.session_filter.add(
            source_ip=draw(st.sampled_from(["300.1.1.1", "fe80::zz", "host.example"])),
            source_port=draw(st.lists(st.integers(65536, 2**32 - 1), min_size=1, max_size=3)),
        )
    return info


def _state(engine: Any) -> tuple[object, ...]:
    return (
        engine.policy_record.version,
        tuple(g.allocation_id for g in engine.grants(LOCAL_ADMIN)),
        tuple(sorted(engine.buffer.sources())),
    )


@pytest.fixture
def fuzz_client(start_server: Callable[..., Any]) -> Any:
    running = start_server(rate_per_s=1e6, burst=1e6)
    with SliceaiClient(running.target, timeout_s=10) as c:
        yield c, running.engine


@FUZZ
@given(batch=bad_batches())
def test_bad_telemetry_batches_are_refused_without_effect(fuzz_client: Any, batch: Any) -> None:
    client, engine = fuzz_client
    before = _state(engine)
    stream = client.connect("fuzz-source")
    it = iter(stream)
    next(it)
    stream.send(batch)
    with pytest.raises(grpc.RpcError) as info:
        for _ in it:
            pass
    assert info.value.code() in {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}
    assert _state(engine) == before


@FUZZ
@given(batch=bad_id_batches())
def test_bad_slice_id_batches_are_refused_without_effect(fuzz_client: Any, batch: Any) -> None:
    client, engine = fuzz_client
    before = _state(engine)
    stream = client.connect("fuzz-source", slice_table=TABLE)
    it = iter(stream)
    next(it)
    stream.send(batch)
    with pytest.raises(grpc.RpcError) as info:
        for _ in it:
            pass
    assert info.value.code() in {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}
    assert _state(engine) == before


@FUZZ
@given(info=bad_bw_infos())
def test_bad_bandwidth_requests_are_refused_without_effect(fuzz_client: Any, info: Any) -> None:
    client, engine = fuzz_client
    before = _state(engine)
    with pytest.raises(grpc.RpcError) as err:
        client.mec.RequestBandwidth(info, timeout=10)
    assert err.value.code() in REFUSALS
    assert err.value.code() != grpc.StatusCode.ALREADY_EXISTS
    assert _state(engine) == before


@FUZZ
@given(
    records=st.lists(
        st.tuples(
            st.sampled_from(["DRB.UEThpDl", "DRB.UEThpUl", "RRU.PrbUsedDl", "Bogus.Name", ""]),
            slice_name,
            st.one_of(good_rate, bad_rate),
        ),
        min_size=1,
        max_size=8,
    ).filter(
        lambda rs: any(
            r[0] in ("Bogus.Name", "") or r[1] not in NAMES or not 0 <= r[2] <= 1e13 for r in rs
        )
    )
)
def test_bad_kpm_reports_are_refused_without_effect(fuzz_client: Any, records: Any) -> None:
    client, engine = fuzz_client
    before = _state(engine)
    with pytest.raises(grpc.RpcError) as err:
        client.push_kpm("e2-fuzz", records)
    assert err.value.code() in {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}
    assert _state(engine) == before


@FUZZ
@given(text=st.text(max_size=300))
def test_random_policy_text_never_replaces_the_running_policy(fuzz_client: Any, text: str) -> None:
    client, engine = fuzz_client
    before = _state(engine)
    with pytest.raises(grpc.RpcError) as err:
        client.admin.ApplyPolicy(admin_pb2.ApplyPolicyRequest(yaml=text), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _state(engine) == before


@FUZZ
@given(payload=st.binary(max_size=200))
def test_garbage_bytes_never_crash_or_change_the_server(fuzz_client: Any, payload: bytes) -> None:
    client, engine = fuzz_client
    before = _state(engine)
    codes = []
    for method in (
        "/sliceai.v1.MecService/RequestBandwidth",
        "/sliceai.v1.AdminService/ApplyPolicy",
    ):
        codes.append(_code_of(lambda m=method: client.channel.unary_unary(m)(payload, timeout=10)))
    stream = client.channel.stream_stream("/sliceai.v1.ControllerService/Connect")
    codes.append(_code_of(lambda: list(stream(iter([payload, payload]), timeout=10))))
    assert all(code != grpc.StatusCode.OK for code in codes[:2])  # no grant, no policy from garbage
    assert codes[2] != grpc.StatusCode.OK
    assert _state(engine)[:2] == before[:2]
    assert client.health() == "SERVING"


def _code_of(fn: Any) -> grpc.StatusCode:
    try:
        fn()
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK
