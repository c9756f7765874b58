"""Unary RPCs answer INVALID_ARGUMENT, never INTERNAL, for requests that do not decode.

The bytes go out as they are (identity serializers on the client's channel): corrupt
protobuf framing, and well-framed messages whose string field is not UTF-8.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor

from sliceai.api.client import SliceaiClient
from sliceai.api.server import SERVICE_NAMES
from sliceai.engine import LOCAL_ADMIN
from sliceai.v1 import admin_pb2, mec_pb2

#: Every RPC whose request is one message, and that message's type.
UNARY_REQUESTS = {
    f"/{SERVICE_NAMES[1]}/{m.name}": m.input_type
    for m in mec_pb2.DESCRIPTOR.services_by_name["MecService"].methods
} | {
    f"/{SERVICE_NAMES[2]}/{m.name}": m.input_type
    for m in admin_pb2.DESCRIPTOR.services_by_name["AdminService"].methods
}
STREAMING_RESPONSE = {f"/{SERVICE_NAMES[1]}/WatchAllocations"}

CORRUPT = {
    "truncated varint": b"\x08\xff\xff",
    "length past the end": b"\x0a\x7f" + b"x" * 3,
    "end-group tag": b"\x0c",
    "tag 0": b"\x00",
    "all ones": b"\xff" * 16,
}
NOT_UTF8 = (b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"abc\x80")  # bad starts, surrogate, tail


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _bad_utf8_messages(descriptor: Any) -> list[bytes]:
    """One message per string field (top level, or one level down) holding invalid UTF-8."""
    out = []
    for f in descriptor.fields:
        if f.type == FieldDescriptor.TYPE_STRING:
            payloads = [_varint(f.number << 3 | 2) + _varint(len(b)) + b for b in NOT_UTF8]
            out += payloads
        elif f.type == FieldDescriptor.TYPE_MESSAGE:
            for inner in _bad_utf8_messages(f.message_type)[:1]:
                out.append(_varint(f.number << 3 | 2) + _varint(len(inner)) + inner)
    return out


def _code(client: SliceaiClient, path: str, payload: bytes) -> tuple[grpc.StatusCode, str]:
    try:
        if path in STREAMING_RESPONSE:
            call = client.channel.unary_stream(path)(payload, timeout=5)
            next(iter(call))
            call.cancel()
        else:
            client.channel.unary_unary(path)(payload, timeout=5)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def test_every_unary_rpc_is_covered() -> None:
    assert len(UNARY_REQUESTS) == 10  # 7 MecService (one streams its answer) + 3 AdminService
    with_strings = [p for p, d in UNARY_REQUESTS.items() if _bad_utf8_messages(d)]
    assert len(with_strings) >= 7  # the invalid-UTF-8 case reaches most requests


@pytest.mark.parametrize("path", sorted(UNARY_REQUESTS))
def test_undecodable_requests_are_invalid_argument(client: SliceaiClient, path: str) -> None:
    descriptor = UNARY_REQUESTS[path]
    cases = {**CORRUPT}
    for i, payload in enumerate(_bad_utf8_messages(descriptor)):
        cases[f"invalid UTF-8 #{i}"] = payload
    wrong = []
    for name, payload in cases.items():
        code, details = _code(client, path, payload)
        if code != grpc.StatusCode.INVALID_ARGUMENT or descriptor.full_name not in details:
            wrong.append(f"{name}: {code.name} {details!r}")
    assert wrong == []
    engine = client.engine  # type: ignore[attr-defined]
    assert engine.grants(LOCAL_ADMIN) == []  # nothing half-applied
    assert engine.policy_record.version == 1
    assert client.health() == "SERVING"  # and the server still answers


def test_a_valid_request_still_goes_through_the_raw_channel(client: SliceaiClient) -> None:
    path = f"/{SERVICE_NAMES[2]}/GetPolicy"
    reply = client.channel.unary_unary(path)(admin_pb2.GetPolicyRequest().SerializeToString())
    assert admin_pb2.PolicyVersion.FromString(reply).version == 1
