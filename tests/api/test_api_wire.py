"""The packed-double fast path reads exactly what the parser reads, or declines."""

from __future__ import annotations

import math
import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sliceai.api.wire import packed_doubles
from sliceai.v1 import controller_pb2

doubles = st.floats(allow_nan=True, allow_infinity=True, width=64)


@settings(max_examples=300, deadline=None)
@given(
    names=st.lists(st.text(max_size=12), max_size=6),
    dl=st.lists(doubles, max_size=40),
    ul=st.lists(doubles, max_size=40),
    ts=doubles,
    period=doubles,
    dpid=st.integers(0, 2**64 - 1),
    ids=st.lists(st.integers(0, 2**32 - 1), max_size=5),
)
def test_fast_path_equals_the_parser_or_declines(
    names: list[str],
    dl: list[float],
    ul: list[float],
    ts: float,
    period: float,
    dpid: int,
    ids: list[int],
) -> None:
    batch = controller_pb2.TelemetryBatch(
        datapath_id=dpid,
        timestamp_unix_s=ts,
        period_s=period,
        slices=names,
        dl_bps=dl,
        ul_bps=ul,
        slice_ids=ids,
    )
    raw = controller_pb2.ControllerMessage(telemetry=batch).SerializeToString()
    parsed = controller_pb2.ControllerMessage.FromString(raw).telemetry
    got_dl = packed_doubles(raw, 5, parsed.dl_bps)
    start = got_dl[1] if got_dl is not None else 0
    got_ul = packed_doubles(raw, 6, parsed.ul_bps, start)
    for got, want in ((got_dl, parsed.dl_bps), (got_ul, parsed.ul_bps)):
        if got is not None:
            expected = np.array(want, dtype=np.float64)
            assert got[0].tobytes() == expected.tobytes()
    finite_ends = all(math.isfinite(v) for v in (dl[:1] + dl[-1:]))
    if finite_ends:
        assert got_dl is not None  # canonical encoding with comparable ends is always found


def test_declines_unpacked_encoding() -> None:
    # field 5 written unpacked: tag (5 << 3 | 1) then one double per entry
    raw = b"".join(bytes([0x29]) + struct.pack("<d", v) for v in (1.0, 2.0))
    parsed = controller_pb2.TelemetryBatch.FromString(raw)
    assert list(parsed.dl_bps) == [1.0, 2.0]
    assert packed_doubles(raw, 5, parsed.dl_bps) is None
