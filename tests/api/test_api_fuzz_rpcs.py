"""Every RPC fuzzed on the wire against a real server on loopback: messages generated
from the protobuf descriptors (any field, any value: NaN, huge integers, unknown enum
numbers, random text), valid messages with their bytes mutated, and raw bytes. No
input may get INTERNAL or UNKNOWN, crash the server or leave it inconsistent: after
the run health is SERVING and the grants the engine holds are exactly the stored ones.

The CI version runs a few hundred inputs; ``make test-slow`` runs at least 10,000.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sliceai.api.client import SliceaiClient
from sliceai.engine import LOCAL_ADMIN
from sliceai.v1 import admin_pb2, controller_pb2, mec_pb2

NAMES = ["surgery-haptics", "surgery-video", "consults", "vitals", "staff-embb", "1-0000B1"]
#: Never an acceptable answer, whatever the input.
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


@dataclass(frozen=True)
class Rpc:
    path: str
    request: type[Message]
    kind: str  # "unary", "server-stream" or "bidi"
    seed: Message  # a valid request, for mutation


def _rpcs() -> list[Rpc]:
    m, a, c = mec_pb2, admin_pb2, controller_pb2
    mec, admin = "/sliceai.v1.MecService/", "/sliceai.v1.AdminService/"
    bw = m.BwInfo(
        app_ins_id="app-1",
        request_type=m.REQUEST_TYPE_APPLICATION_SPECIFIC,
        slice="staff-embb",
        fixed_allocation_bps=1000,
        allocation_direction=m.ALLOCATION_DIRECTION_DOWNLINK,
    )
    return [
        Rpc("/sliceai.v1.ControllerService/Connect", c.ControllerMessage, "bidi", c.ControllerMessage()),
        Rpc(mec + "PushTelemetry", m.KpmReport, "unary", m.KpmReport(source_id="e2")),
        Rpc(mec + "GetForecast", m.ForecastRequest, "unary", m.ForecastRequest(horizon=2)),
        Rpc(mec + "RequestBandwidth", m.BwInfo, "unary", bw),
        Rpc(mec + "ModifyBandwidth", m.ModifyBandwidthRequest, "unary",
            m.ModifyBandwidthRequest(allocation_id="x", bw_info=bw)),
        Rpc(mec + "ReleaseBandwidth", m.ReleaseBandwidthRequest, "unary",
            m.ReleaseBandwidthRequest(allocation_id="x")),
        Rpc(mec + "ListBandwidth", m.ListBandwidthRequest, "unary", m.ListBandwidthRequest()),
        Rpc(mec + "WatchAllocations", m.WatchAllocationsRequest, "server-stream",
            m.WatchAllocationsRequest(slices=["consults"])),
        Rpc(admin + "GetPolicy", a.GetPolicyRequest, "unary", a.GetPolicyRequest()),
        Rpc(admin + "ApplyPolicy", a.ApplyPolicyRequest, "unary",
            a.ApplyPolicyRequest(yaml="name: x\n", dry_run=True)),
        Rpc(admin + "ListPolicyVersions", a.ListPolicyVersionsRequest, "unary",
            a.ListPolicyVersionsRequest(limit=3)),
    ]  # fmt: skip


RPCS = _rpcs()
F = FieldDescriptor
_INTS = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1),
    F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    F.TYPE_INT64: (-(2**63), 2**63 - 1),
    F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1),
    F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1),
    F.TYPE_FIXED64: (0, 2**64 - 1),
}
_TEXT = st.one_of(
    st.sampled_from([*NAMES, "app-1", "DRB.UEThpDl", "DRB.PdcpSduVolumeUL", "UDP", "10.0.0.1", ""]),
    st.text(max_size=40),
)


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.type in _INTS:
        lo, hi = _INTS[field.type]
        return st.one_of(st.integers(lo, hi), st.sampled_from([lo, hi, 0, 1, 1000]))
    if field.type == F.TYPE_DOUBLE:
        return st.one_of(st.floats(), st.sampled_from([0.0, 1e6, 1e13, -1.0, math.nan]))
    if field.type == F.TYPE_FLOAT:
        return st.floats(width=32)
    if field.type == F.TYPE_BOOL:
        return st.booleans()
    if field.type == F.TYPE_STRING:
        return _TEXT
    if field.type == F.TYPE_BYTES:
        return st.binary(max_size=40)
    if field.type == F.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-3, 200))
    raise AssertionError(f"unhandled field type {field.type}")


def messages(desc: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Any message of ``desc``'s type: each field absent or drawn from its whole range."""
    cls = _class_of(desc)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in desc.fields:
        if field.type == F.TYPE_MESSAGE:
            value = messages(field.message_type, depth + 1) if depth < 3 else st.just(None)
        else:
            value = _scalar(field)
        if field.is_repeated:
            value = st.lists(value, max_size=6 if depth == 0 else 3)
        fields[field.name] = value
    return st.fixed_dictionaries({}, optional=fields).map(lambda d: _build(cls, d))


def _class_of(desc: Descriptor) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(desc)


def _build(cls: type[Message], values: dict[str, Any]) -> Message:
    msg = cls()
    for name, value in values.items():
        field = cls.DESCRIPTOR.fields_by_name[name]
        if value is None:
            continue
        if field.is_repeated:
            target = getattr(msg, name)
            for v in value:
                if field.type == F.TYPE_MESSAGE:
                    if v is not None:
                        target.add().CopyFrom(v)
                else:
                    target.append(v)
        elif field.type == F.TYPE_MESSAGE:
            getattr(msg, name).CopyFrom(value)
        else:
            setattr(msg, name, value)
    return msg


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with bytes flipped, cut, inserted or repeated."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "repeat"]))
        at = draw(st.integers(0, len(out)))
        if op == "flip" and out:
            at = min(at, len(out) - 1)
            out[at] ^= draw(st.integers(1, 255))
        elif op == "cut":
            out = out[:at]
        elif op == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            out += out[at:]
    return bytes(out)


def payloads(rpc: Rpc) -> st.SearchStrategy[bytes]:
    """Wire bytes for ``rpc``: a generated message, a mutated one, or raw bytes."""
    generated = messages(rpc.request.DESCRIPTOR).map(lambda m: m.SerializeToString())
    seeds = st.one_of(st.just(rpc.seed.SerializeToString()), generated)
    return st.one_of(generated, seeds.flatmap(mutated), st.binary(max_size=300))


@st.composite
def calls(draw: st.DrawFn) -> tuple[Rpc, list[bytes]]:
    rpc = draw(st.sampled_from(RPCS))
    if rpc.kind != "bidi":
        return rpc, [draw(payloads(rpc))]
    hello = controller_pb2.ControllerMessage()
    hello.hello.source_id = draw(st.sampled_from(["fuzz-ctl", ""]))
    first = st.one_of(st.just(hello.SerializeToString()), payloads(rpc))
    return rpc, [draw(first), *draw(st.lists(payloads(rpc), max_size=3))]


def _send(channel: grpc.Channel, rpc: Rpc, frames: list[bytes]) -> grpc.StatusCode:
    """The status one call ends with (OK when it answered; streams are cancelled after
    their first two messages)."""
    try:
        if rpc.kind == "unary":
            channel.unary_unary(rpc.path)(frames[0], timeout=10)
        elif rpc.kind == "server-stream":
            call = channel.unary_stream(rpc.path)(frames[0], timeout=10)
            next(iter(call), None)
            call.cancel()
        else:
            call = channel.stream_stream(rpc.path)(iter(frames), timeout=10)
            for _ in itertools.islice(call, 2):
                pass
            call.cancel()
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        return code
    return grpc.StatusCode.OK


@pytest.fixture
def target(start_server: Callable[..., Any]) -> Any:
    running = start_server(rate_per_s=1e6, burst=1e6)
    return running


def _fuzz(running: Any, examples: int) -> dict[str, int]:
    """Run ``examples`` generated calls; returns how many ended with each status."""
    seen: dict[str, int] = {}
    failures: list[str] = []

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(call=calls())
    def one(call: tuple[Rpc, list[bytes]]) -> None:
        rpc, frames = call
        code = _send(channel, rpc, frames)
        seen[code.name] = seen.get(code.name, 0) + 1
        if code in FORBIDDEN:
            failures.append(f"{rpc.path} {code.name} <- {frames!r:.300}")
        assert code not in FORBIDDEN, failures[-1]

    with grpc.insecure_channel(running.target) as channel:
        one()
    with SliceaiClient(running.target) as c:
        assert c.health() == "SERVING"
        listed = sorted(g.allocation_id for g in c.list_bandwidth())
    engine = running.engine
    held = sorted(g.allocation_id for g in engine.grants(LOCAL_ADMIN))
    stored = sorted(g.allocation_id for g in engine.store.load_grants())
    assert listed == held == stored
    assert engine.store.fault is None
    assert not failures
    return seen


def test_every_rpc_fuzzed_answers_without_internal_or_unknown(target: Any) -> None:
    seen = _fuzz(target, 300)
    assert sum(seen.values()) >= 300
    assert seen.get("INVALID_ARGUMENT", 0) > 0  # the inputs did reach the validation


@pytest.mark.slow
def test_ten_thousand_fuzzed_calls_answer_without_internal_or_unknown(
    target: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = _fuzz(target, 10_000)
    total = sum(seen.values())
    with capsys.disabled():
        print(f"\nfuzz: {total} calls over {len(RPCS)} RPCs; status counts {sorted(seen.items())}")
    assert total >= 10_000
