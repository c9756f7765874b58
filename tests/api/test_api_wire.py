"""The wire fast path reads exactly what the parser reads, or declines.

Messages are encoded by hand here, canonically or not (unpacked or split
repeated fields, shuffled field order, unknown fields, split telemetry
records), parsed with protobuf, and the fast path's columns compared with the
parsed ones: equal, or the fast path declined. ``ingest_batch`` gives the
engine the same arguments (or raises the same error) with and without it.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sliceai.api import wire
from sliceai.api.servicers import SliceTable, ingest_batch
from sliceai.engine import InvalidInput
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


styles = st.sampled_from(["packed", "packed", "packed", "unpacked", "split"])
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
    names = draw(st.lists(st.text(max_size=6), max_size=3))
    dropped = draw(st.lists(st.integers(0, 2**64 - 1), max_size=n))
    style = {f: draw(styles) for f in (5, 6, 7, 10)}
    records = [
        tag(1, 0) + varint(draw(st.integers(0, 2**64 - 1))),
        tag(2, 1) + struct.pack("<d", draw(doubles)),
        tag(3, 1) + struct.pack("<d", draw(doubles)),
        *[ld(4, s.encode()) for s in names],
        *repeated(5, dl, "d", style[5]),
        *repeated(6, ul, "d", style[6]),
        *repeated(7, dropped, "v", style[7]),
        tag(9, 0) + varint(draw(st.integers(0, 1))),
        *repeated(10, ids, "v", style[10]),
    ]
    unknown = draw(unknown_records)
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
    split = draw(st.booleans()) and len(body) > 2
    if split:  # two telemetry records: the parser merges them
        cut = draw(st.integers(0, len(records)))
        raw = ld(2, b"".join(records[:cut])) + ld(2, b"".join(records[cut:]))
    else:
        raw = ld(2, body)
    canonical = (
        not unknown
        and not shuffled
        and not split
        and all(s == "packed" for s in style.values())
        and len(names) <= 1
    )
    return raw, canonical


def _same(got: np.ndarray, want: Any) -> None:
    assert got.tobytes() == np.array(want, dtype=np.float64).tobytes()


@settings(max_examples=500, deadline=None)
@given(encoded=encodings())
def test_fast_path_equals_the_parser_or_declines(encoded: tuple[bytes, bool]) -> None:
    raw, canonical = encoded
    parsed = controller_pb2.ControllerMessage.FromString(raw).telemetry
    spans = wire.telemetry_spans(raw)
    if canonical:
        assert spans is not None
    if spans is None:
        return
    dl, ul = wire.doubles(raw, spans, wire.DL_BPS), wire.doubles(raw, spans, wire.UL_BPS)
    assert dl is not None
    assert ul is not None
    _same(dl, parsed.dl_bps)
    _same(ul, parsed.ul_bps)
    key = wire.field_bytes(raw, spans, wire.SLICE_IDS)
    assert bool(key) == bool(parsed.slice_ids)
    assert (wire.SLICES in spans) == bool(parsed.slices)
    for field, column in (
        (wire.DL_DROPPED, parsed.dl_dropped_bytes),
        (wire.UL_DROPPED, parsed.ul_dropped_bytes),
    ):
        assert field in spans or not column
    ids = SliceTable(("a",)).ids(key, parsed)
    assert ids.tolist() == list(parsed.slice_ids)


def test_canonical_serialisation_takes_the_fast_path() -> None:
    batch = controller_pb2.TelemetryBatch(
        datapath_id=7,
        timestamp_unix_s=1.5,
        period_s=1.0,
        slice_ids=[0, 300, 2],
        dl_bps=[1.0, math.nan, 3.0],
        ul_bps=[4.0, 5.0, -0.0],
        end_of_period=True,
    )
    raw = controller_pb2.ControllerMessage(telemetry=batch).SerializeToString()
    spans = wire.telemetry_spans(raw)
    assert spans is not None
    assert wire.field_bytes(raw, spans, wire.SLICE_IDS) == varint(0) + varint(300) + varint(2)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        ld(1, b""),  # a Hello
        ld(2, tag(5, 1) + struct.pack("<d", 1.0)),  # unpacked dl_bps
        ld(2, ld(5, bytes(8))) + ld(2, ld(6, bytes(8))),  # two telemetry records
        ld(2, ld(5, bytes(8)) + ld(5, bytes(8))),  # dl_bps in two records
        ld(2, tag(20, 0) + varint(1)),  # a field over 15
        ld(2, tag(12, 3) + tag(12, 4)),  # a group
    ],
)
def test_declines(raw: bytes) -> None:
    assert wire.telemetry_spans(raw) is None


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
            out.append(list(a))
        else:
            out.append(a)
    return tuple(out)


@settings(max_examples=300, deadline=None)
@given(encoded=encodings(), with_table=st.booleans())
def test_ingest_batch_gives_the_engine_the_same_with_or_without_the_fast_path(
    encoded: tuple[bytes, bool], with_table: bool
) -> None:
    raw, _ = encoded
    msg = controller_pb2.ControllerMessage.FromString(raw)
    outcomes = []
    for wire_bytes in (raw, b""):  # b"": the walk declines, the parsed message is used
        engine = _Recorder()
        table = SliceTable(("a", "b")) if with_table else None
        try:
            ingest_batch(engine, "src", table, msg.telemetry, wire_bytes)  # type: ignore[arg-type]
            outcomes.append(_normal(engine.args))
        except InvalidInput as exc:
            outcomes.append(("InvalidInput", str(exc)))
    assert outcomes[0] == outcomes[1]


def test_slice_table_cache_is_bounded_and_returns_the_parsed_ids() -> None:
    table = SliceTable(("a", "b"))
    for k in range(2000):
        batch = controller_pb2.TelemetryBatch(slice_ids=[k, k + 1, 7] * 40)
        key = b"".join(varint(v) for v in batch.slice_ids)
        for _ in range(2):
            ids = table.ids(key, batch)
            assert ids.tolist() == list(batch.slice_ids)
            assert not ids.flags.writeable
    assert table._bytes <= SliceTable.MAX_BYTES
