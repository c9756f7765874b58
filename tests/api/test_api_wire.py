"""The wire fast path reads exactly what protobuf reads, or declines.

Messages are encoded by hand here, canonically or not (unpacked or split
repeated fields, shuffled field order, unknown fields, split telemetry
records, corrupted bytes), and the fast path compared with protobuf's parse:
same values, or declined. ``ingest_message`` hands the engine the same
arguments (or raises the same error) as parsing with protobuf does.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import pytest
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st

from sliceai.api import wire
from sliceai.api.servicers import SliceTable, ingest_batch, ingest_message
from sliceai.engine import EngineError, InvalidInput
from sliceai.v1 import controller_pb2

doubles = st.floats(allow_nan=True, allow_infinity=True, width=64)


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def tag(field: int, wire_type: int) -> bytes:
    return varint(field << 3 | wire_type)


def ld(field: int, payload: bytes) -> bytes:
    return tag(field, 2) + varint(len(payload)) + payload


def repeated(field: int, values: list[Any], kind: str, style: str) -> list[bytes]:
    """Records of a repeated numeric field: packed, unpacked, or packed in two parts."""
    enc = (lambda v: struct.pack("<d", v)) if kind == "d" else varint
    if not values:
        return []
    if style == "unpacked":
        return [tag(field, 1 if kind == "d" else 0) + enc(v) for v in values]
    if style == "split" and len(values) > 1:
        half = len(values) // 2
        return [
            ld(field, b"".join(map(enc, values[:half]))),
            ld(field, b"".join(map(enc, values[half:]))),
        ]
    return [ld(field, b"".join(map(enc, values)))]


styles = st.sampled_from(["packed"] * 6 + ["unpacked", "split"])
unknown_records = st.lists(
    st.one_of(
        st.tuples(st.integers(11, 40), st.just(0), st.integers(0, 2**64 - 1)),
        st.tuples(st.integers(11, 40), st.just(1), st.binary(min_size=8, max_size=8)),
        st.tuples(st.integers(11, 40), st.just(5), st.binary(min_size=4, max_size=4)),
        st.tuples(st.integers(11, 40), st.just(2), st.binary(max_size=20)),
    ),
    max_size=3,
)


@st.composite
def encodings(draw: st.DrawFn) -> tuple[bytes, bool]:
    """``(ControllerMessage wire bytes, canonical?)`` of a random telemetry batch."""
    n = draw(st.integers(0, 12))
    ragged = draw(st.booleans())
    dl = draw(st.lists(doubles, min_size=n, max_size=n))
    ul = draw(st.lists(doubles, min_size=n, max_size=n + (2 if ragged else 0)))
    ids = draw(st.lists(st.integers(0, 2**32 - 1), max_size=n))
    rarely = st.sampled_from([False, False, False, True])
    names = draw(st.lists(st.text(max_size=6), max_size=3)) if draw(rarely) else []
    dropped = draw(st.lists(st.integers(0, 2**64 - 1), max_size=n)) if draw(rarely) else []
    style = {f: draw(styles) for f in (5, 6, 7, 10)}
    records = [
        tag(1, 0) + varint(dpid := draw(st.integers(0, 2**64 - 1))),
        tag(2, 1) + struct.pack("<d", draw(doubles)),
        tag(3, 1) + struct.pack("<d", draw(doubles)),
        *[ld(4, s.encode()) for s in names],
        *repeated(5, dl, "d", style[5]),
        *repeated(6, ul, "d", style[6]),
        *repeated(7, dropped, "v", style[7]),
        tag(9, 0) + varint(draw(st.integers(0, 1))),
        *repeated(10, ids, "v", style[10]),
    ]
    unknown = draw(unknown_records) if draw(rarely) else []
    for field, wire_type, value in unknown:
        if wire_type == 0:
            records.append(tag(field, 0) + varint(value))
        elif wire_type == 2:
            records.append(ld(field, value))
        else:
            records.append(tag(field, wire_type) + value)
    shuffled = draw(st.booleans())
    if shuffled:
        records = draw(st.permutations(records))
    body = b"".join(records)
    split = draw(rarely) and len(body) > 2
    if split:  # two telemetry records: the parser merges them
        cut = draw(st.integers(0, len(records)))
        raw = ld(2, b"".join(records[:cut])) + ld(2, b"".join(records[cut:]))
    else:
        raw = ld(2, body)
    corrupt = draw(st.sampled_from(["none", "none", "none", "none", "truncate", "byte"]))
    if corrupt == "truncate":
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif corrupt == "byte":
        at = draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + bytes([draw(st.integers(0, 255))]) + raw[at + 1 :]
    canonical = (
        not unknown
        and not shuffled
        and not split
        and corrupt == "none"
        and all(s == "packed" for s in style.values())
        and not names
        and not dropped
        and dpid < 2**63  # (ten-byte varints are left to protobuf)
    )
    return raw, canonical


def _same(got: np.ndarray, want: Any) -> None:
    assert got.tobytes() == np.array(want, dtype=np.float64).tobytes()


def _parse(raw: bytes) -> Any:
    try:
        return controller_pb2.ControllerMessage.FromString(raw)
    except DecodeError:
        return None


@settings(max_examples=100, deadline=None)
@given(encoded=encodings())
def test_fast_path_equals_the_parser_or_declines(encoded: tuple[bytes, bool]) -> None:
    _check_fast_path(encoded)


@pytest.mark.slow
@settings(max_examples=600, deadline=None)
@given(encoded=encodings())
def test_fast_path_equals_the_parser_or_declines_on_many_encodings(
    encoded: tuple[bytes, bool],
) -> None:
    _check_fast_path(encoded)


def _check_fast_path(encoded: tuple[bytes, bool]) -> None:
    """The fast path parses what protobuf parses, or declines (returns None); it never
    declines the canonical encoding."""
    raw, canonical = encoded
    fast = wire.parse_telemetry(raw)
    if canonical:
        assert fast is not None
    if fast is None:
        return
    ts, period, end, dl, ul, packed_ids = fast
    msg = _parse(raw)
    if msg is None:  # then the undecoded ids are what is malformed: never cached (see below)
        assert _parse(ld(2, ld(10, packed_ids))) is None
        return
    assert msg.WhichOneof("kind") == "telemetry"
    batch = msg.telemetry
    assert struct.pack("<dd", ts, period) == struct.pack(
        "<dd", batch.timestamp_unix_s, batch.period_s
    )
    assert end == batch.end_of_period
    _same(dl, batch.dl_bps)
    _same(ul, batch.ul_bps)
    assert not batch.slices
    assert not batch.dl_dropped_bytes
    assert not batch.ul_dropped_bytes
    ids = controller_pb2.TelemetryBatch.FromString(ld(10, packed_ids)).slice_ids
    assert list(ids) == list(batch.slice_ids)


def test_canonical_serialisation_takes_the_fast_path() -> None:
    batch = controller_pb2.TelemetryBatch(
        datapath_id=2**63 - 1,
        timestamp_unix_s=1.5,
        period_s=1.0,
        slice_ids=[0, 300, 2],
        dl_bps=[1.0, math.nan, 3.0],
        ul_bps=[4.0, 5.0, -0.0],
        end_of_period=True,
    )
    raw = controller_pb2.ControllerMessage(telemetry=batch).SerializeToString()
    fast = wire.parse_telemetry(raw)
    assert fast is not None
    assert fast[5] == varint(0) + varint(300) + varint(2)
    assert fast[:3] == (1.5, 1.0, True)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        ld(1, b""),  # a Hello
        ld(2, tag(5, 1) + struct.pack("<d", 1.0)),  # unpacked dl_bps
        ld(2, ld(5, bytes(8))) + ld(2, ld(6, bytes(8))),  # two telemetry records
        ld(2, ld(5, bytes(8)) + ld(5, bytes(8))),  # dl_bps in two records
        ld(2, ld(5, bytes(7))),  # not whole doubles
        ld(2, ld(4, b"consults")),  # names
        ld(2, ld(7, varint(1))),  # dropped bytes
        ld(2, tag(9, 0) + varint(2**40)),  # a long bool
        ld(2, tag(1, 0) + varint(2**64 - 1)),  # a ten-byte varint
        ld(2, tag(20, 0) + varint(1)),  # a field over 15
        ld(2, tag(12, 0) + varint(1)),  # an unknown field
        ld(2, tag(12, 3) + tag(12, 4)),  # a group
        ld(2, tag(2, 1) + bytes(7)),  # cut short
    ],
)
def test_declines(raw: bytes) -> None:
    assert wire.parse_telemetry(raw) is None


class _Recorder:
    def ingest(self, *args: Any) -> int:
        self.args = args
        return 0


def _normal(args: tuple[Any, ...]) -> tuple[Any, ...]:
    out: list[Any] = []
    for a in args:
        if isinstance(a, np.ndarray):
            out.append((a.dtype.kind, a.tobytes()))
        elif isinstance(a, float):
            out.append(struct.pack("<d", a))  # NaN equals NaN
        elif hasattr(a, "__len__") and not isinstance(a, (str, tuple)):
            out.append(tuple(a))
        else:
            out.append(a)
    return tuple(out)


def _outcome(fn: Any) -> Any:
    engine = _Recorder()
    admitted = []
    try:
        fn(engine, lambda: admitted.append(True))
    except EngineError as exc:
        return type(exc).__name__, str(exc), admitted
    return _normal(engine.args), admitted


@settings(max_examples=400, deadline=None)
@given(encoded=encodings(), with_table=st.booleans())
def test_ingest_message_gives_the_engine_what_protobuf_parsing_gives(
    encoded: tuple[bytes, bool], with_table: bool
) -> None:
    raw, _ = encoded
    table = SliceTable(("a", "b")) if with_table else None

    def reference(engine: Any, admit: Any) -> None:
        msg = _parse(raw)
        if msg is None:
            raise InvalidInput("malformed ControllerMessage")
        if msg.WhichOneof("kind") != "telemetry":
            raise InvalidInput("only telemetry may follow the Hello")
        admit()
        ingest_batch(engine, "src", table, msg.telemetry)

    want = _outcome(reference)
    for _ in range(2):  # the second time with the stream's id cache warm
        assert _outcome(lambda e, a: ingest_message(e, "src", table, raw, a)) == want


def test_slice_table_cache_is_bounded() -> None:
    table = SliceTable(("a", "b"))
    for k in range(2000):
        ids = np.array([k, k + 1, 7] * 40, dtype=np.int64)
        key = b"".join(varint(int(v)) for v in ids)
        table.remember(key, ids)
        got = table.get(key)
        assert got is not None
        assert not got.flags.writeable
    assert table._bytes <= SliceTable.MAX_BYTES
