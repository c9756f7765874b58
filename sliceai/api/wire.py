"""Read packed ``repeated double`` fields straight from a message's wire bytes.

Converting a protobuf ``repeated double`` to numpy goes through one Python
float per value (about 25 ns each), which is the largest per-batch cost of
telemetry ingestion. A packed field is, on the wire, the tag, the byte length
and then the IEEE-754 little-endian values back to back, so numpy can view
them in place (:func:`numpy.frombuffer`) once the field is found.

:func:`packed_doubles` finds the field by searching for its tag and exact
length and checks the first and last values against the parsed message; when
anything does not line up (unpacked encoding, an unusual field order, NaN at
either end) it returns None and the caller uses the parsed message instead.
So the result is either exactly the parsed values or None: the fast path can
never change what is ingested. The client controls every byte either way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

_MAX_TRIES = 4


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def packed_doubles(
    raw: bytes, field_number: int, parsed: Sequence[float], start: int = 0
) -> tuple[npt.NDArray[np.float64], int] | None:
    """``(values (n,) float64 read-only view, end offset)`` of a packed double field, or None.

    ``raw``: the serialized message containing the field (possibly nested);
    ``field_number``: 1..15; ``parsed``: the same field from the parsed message;
    ``start``: byte offset to search from.
    """
    n = len(parsed)
    if n == 0:
        return np.zeros(0), start
    head = bytes([(field_number << 3) | 2]) + _varint(8 * n)
    first, last = parsed[0], parsed[n - 1]
    pos = raw.find(head, start)
    for _ in range(_MAX_TRIES):
        if pos < 0:
            return None
        begin = pos + len(head)
        end = begin + 8 * n
        if end <= len(raw):
            values = np.frombuffer(raw, dtype="<f8", count=n, offset=begin)
            if values[0] == first and values[n - 1] == last:
                return values.astype(np.float64, copy=False), end
        pos = raw.find(head, pos + 1)
    return None
