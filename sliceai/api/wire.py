"""Locate a telemetry batch's columns in its ControllerMessage's wire bytes.

Converting a protobuf ``repeated double`` to numpy goes through one Python
float per value (about 25 ns each), and ``repeated uint32`` likewise, which
is the largest per-batch cost of telemetry ingestion. A packed field is, on
the wire, the tag, the byte length and then the values back to back
(IEEE-754 little-endian for doubles), so numpy can view them in place
(:func:`numpy.frombuffer`) once the field is found.

:func:`telemetry_spans` walks the fields of the message (already parsed, so
well-formed) and returns where each length-delimited TelemetryBatch field
lies. It declines (None) whenever a column could be spread over several
records or is not packed: a repeated field given twice or unpacked, a
ControllerMessage that is not exactly one telemetry record, a field number
over 15, a group. Protobuf concatenates repeated records and merges repeated
message records, so when the walk accepts, each span holds exactly the values
the parser read for that field, and the caller may use the bytes instead of
the parsed containers; when it declines, the caller uses the parsed message.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

TELEMETRY = 2  # ControllerMessage.telemetry
SLICES, DL_BPS, UL_BPS, DL_DROPPED, UL_DROPPED, SLICE_IDS = 4, 5, 6, 7, 8, 10
_REPEATED = frozenset({SLICES, DL_BPS, UL_BPS, DL_DROPPED, UL_DROPPED, SLICE_IDS})

Spans = dict[int, tuple[int, int]]
_TELEMETRY_TAG = TELEMETRY << 3 | 2
_F8 = np.dtype("<f8")


def _varint(raw: bytes, pos: int) -> tuple[int, int]:
    """``(value, position after it)`` of the varint at ``pos``."""
    value = shift = 0
    while True:
        b = raw[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def telemetry_spans(raw: bytes) -> Spans | None:
    """Field number -> ``(begin, end)`` byte span of each length-delimited field, or None.

    ``raw``: a serialized ControllerMessage holding a TelemetryBatch. Fields that
    are absent have no entry. None when the fast path must not be used (see the
    module docstring).
    """
    size = len(raw)
    try:
        if raw[0] != _TELEMETRY_TAG:
            return None
        length, pos = _varint(raw, 1)
        if pos + length != size:
            return None
        spans: Spans = {}
        while pos < size:
            tag = raw[pos]
            if tag >= 0x80:  # field number over 15: not one of ours
                return None
            wire_type = tag & 7
            if wire_type == 2:
                length = raw[pos + 1]
                if length < 0x80:
                    pos += 2
                elif raw[pos + 2] < 0x80:  # (inline: most lengths are one or two bytes)
                    length = (length & 0x7F) | raw[pos + 2] << 7
                    pos += 3
                else:
                    length, pos = _varint(raw, pos + 1)
                field = tag >> 3
                if field in spans:
                    return None
                spans[field] = (pos, pos + length)
                pos += length
            elif tag >> 3 in _REPEATED:  # unpacked entries of a repeated field
                return None
            elif wire_type == 1:
                pos += 9
            elif wire_type == 0:
                pos += 1
                while raw[pos] >= 0x80:
                    pos += 1
                pos += 1
            elif wire_type == 5:
                pos += 5
            else:
                return None
    except IndexError:
        return None
    return spans if pos == size else None


def doubles(raw: bytes, spans: Spans, field: int) -> npt.NDArray[np.float64] | None:
    """The packed double field's values, a read-only view of ``raw``; None if malformed."""
    span = spans.get(field)
    if span is None:
        return np.zeros(0)
    begin, end = span
    if (end - begin) & 7:
        return None
    return np.frombuffer(raw, _F8, (end - begin) >> 3, begin)


def field_bytes(raw: bytes, spans: Spans, field: int) -> bytes:
    """The payload bytes of a length-delimited field (b"" when absent)."""
    span = spans.get(field)
    return raw[span[0] : span[1]] if span is not None else b""
