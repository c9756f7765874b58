"""Read a telemetry batch straight from its ControllerMessage wire bytes.

Parsing a 256-slice batch with protobuf and converting its ``repeated double``
and ``repeated uint32`` columns to numpy (one Python number per value) is the
largest per-batch cost of telemetry ingestion. On the wire a packed column is
the tag, the byte length and the values back to back (IEEE-754 little-endian
for doubles), so numpy can view the doubles in place once the field is found.

:func:`parse_telemetry` reads the common shape of a batch, and only that: a
ControllerMessage that is exactly one ``telemetry`` record whose fields are
``datapath_id`` (1), ``timestamp_unix_s`` (2), ``period_s`` (3), ``dl_bps``
(5), ``ul_bps`` (6), ``end_of_period`` (9) and ``slice_ids`` (10), each at
most once and with its canonical wire type, every length and varint within the
bytes. Anything else (names, dropped bytes, unknown or repeated fields,
unpacked columns, a malformed byte) gives None and the caller parses the
message with protobuf. So what it accepts, protobuf parses to the same values,
with one exception the caller must cover: the packed ``slice_ids`` bytes are
returned undecoded, and only protobuf may vouch
for them (see ``SliceTable`` in servicers.py).
"""

from __future__ import annotations

import struct

import numpy as np
import numpy.typing as npt

_F8 = np.dtype("<f8")
_EMPTY = np.zeros(0)
_EMPTY.flags.writeable = False
_double = struct.Struct("<d").unpack_from

# tag byte -> field, for the fields read here (field << 3 | wire type)
_DATAPATH, _TIMESTAMP, _PERIOD, _DL, _UL, _END, _IDS = 0x08, 0x11, 0x19, 0x2A, 0x32, 0x48, 0x52
_TELEMETRY = 0x12  # ControllerMessage.telemetry


# A TelemetryBatch read by :func:`parse_telemetry`, absent fields at their defaults:
# (timestamp_unix_s, period_s, end_of_period, dl_bps, ul_bps, slice_ids), the rates as
# read-only views of the wire bytes, slice_ids the packed field's payload, undecoded
# (b"" when absent). A plain tuple: cheaper to build than a named one.
Telemetry = tuple[float, float, bool, npt.NDArray[np.float64], npt.NDArray[np.float64], bytes]


def _length(raw: bytes, pos: int) -> tuple[int, int]:
    """``(value, position after it)`` of a length varint (at most 5 bytes) at ``pos``."""
    value = shift = 0
    for _ in range(5):
        b = raw[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
    raise IndexError("length varint over 5 bytes")


def parse_telemetry(raw: bytes) -> Telemetry | None:
    """The batch in ``raw`` (a serialized ControllerMessage), or None: parse it with protobuf."""
    size = len(raw)
    try:
        if raw[0] != _TELEMETRY:
            return None
        if raw[1] < 0x80:
            length, pos = raw[1], 2
        elif raw[2] < 0x80:
            length, pos = (raw[1] & 0x7F) | raw[2] << 7, 3
        else:
            length, pos = _length(raw, 1)
        if pos + length != size:
            return None
        ts = period = 0.0
        end = False
        dl = ul = _EMPTY
        ids = b""
        seen = 0
        while pos < size:
            tag = raw[pos]
            bit = 1 << (tag & 0x7F)  # (a tag over 0x7f is no field of ours: declined below)
            if seen & bit:
                return None
            seen |= bit
            if tag in (_DL, _UL, _IDS):
                length = raw[pos + 1]
                if length < 0x80:
                    pos += 2
                elif raw[pos + 2] < 0x80:  # (inline: most lengths are one or two bytes)
                    length = (length & 0x7F) | raw[pos + 2] << 7
                    pos += 3
                else:
                    length, pos = _length(raw, pos + 1)
                stop = pos + length
                if stop > size:
                    return None
                if tag == _IDS:
                    ids = raw[pos:stop]
                elif length & 7:
                    return None
                elif tag == _DL:
                    dl = np.frombuffer(raw, _F8, length >> 3, pos)
                else:
                    ul = np.frombuffer(raw, _F8, length >> 3, pos)
                pos = stop
            elif tag in (_TIMESTAMP, _PERIOD):
                if pos + 9 > size:
                    return None
                if tag == _TIMESTAMP:
                    ts = _double(raw, pos + 1)[0]
                else:
                    period = _double(raw, pos + 1)[0]
                pos += 9
            elif tag == _END:
                b = raw[pos + 1]
                if b >= 0x80:  # a bool of more than one byte: let protobuf judge
                    return None
                end = b != 0
                pos += 2
            elif tag == _DATAPATH:
                stop = pos + 1
                while raw[stop] >= 0x80:
                    stop += 1
                    if stop - pos > 9:  # a varint over 9 bytes: let protobuf judge
                        return None
                pos = stop + 1
            else:
                return None
    except IndexError:
        return None
    if pos != size:
        return None
    return ts, period, end, dl, ul, ids
