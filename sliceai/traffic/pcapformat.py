"""Record-level reading of pcap and pcapng capture files, with exact positions for errors.

Both yield :class:`PacketBatch` es: up to ``batch`` packets as a fixed-width
header matrix (the first :data:`HEADER_BYTES` captured bytes of each packet,
zero-padded) plus timestamps, on-wire lengths and link types, so the
classifier can decode every header field with numpy at once. Only the
container is parsed here (the global header and per-record headers of
libpcap; section, interface and packet blocks of pcapng). Timestamps honour
the microsecond/nanosecond pcap magic and the pcapng ``if_tsresol`` option.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from sliceai.traffic.trace import TraceReadError

HEADER_BYTES = 96
MAX_CAPLEN = 262144  # the largest snap length libpcap writes
DEFAULT_BATCH = 65536
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
SUPPORTED_LINKTYPES = (LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6)
_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
_PCAPNG_SHB = 0x0A0D0D0A


@dataclass
class PacketBatch:
    """``n`` packets: ``headers (n, HEADER_BYTES) uint8``, ``time (n,)`` epoch s,
    ``length (n,)`` on-wire bytes, ``linktype (n,)``, ``number (n,)`` 1-based packet numbers."""

    headers: npt.NDArray[np.uint8]
    time: npt.NDArray[np.float64]
    length: npt.NDArray[np.int64]
    linktype: npt.NDArray[np.int64]
    number: npt.NDArray[np.int64]


class _Collector:
    """Packets gathered for the next batch (plain lists: the per-packet path stays cheap)."""

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.first_number = 1
        self.data: list[bytes] = []  # the first HEADER_BYTES captured bytes of each packet
        self.time: list[float] = []
        self.length: list[int] = []
        self.linktype: list[int] = []

    def take(self) -> PacketBatch:
        n = len(self.time)
        sizes = np.fromiter(map(len, self.data), np.int64, count=n)
        flat = np.frombuffer(b"".join(self.data), dtype=np.uint8)
        headers = np.zeros((n, HEADER_BYTES), dtype=np.uint8)
        row = np.repeat(np.arange(n), sizes)
        col = np.arange(len(flat)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        headers[row, col] = flat
        out = PacketBatch(
            headers,
            np.asarray(self.time, dtype=np.float64),
            np.asarray(self.length, dtype=np.int64),
            np.asarray(self.linktype, dtype=np.int64),
            np.arange(self.first_number, self.first_number + n, dtype=np.int64),
        )
        self.first_number += n
        self.data, self.time, self.length, self.linktype = [], [], [], []
        return out


def read_packets(path: Path, batch: int = DEFAULT_BATCH) -> Iterator[PacketBatch]:
    """Packets of a pcap or pcapng file in batches; :class:`TraceReadError` on bad input."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise TraceReadError(path, None, f"cannot read file: {exc.strerror}") from None
    with handle:
        magic = handle.read(4)
        if magic in _PCAP_MAGIC:
            yield from _pcap(path, handle, magic, batch)
        elif len(magic) == 4 and struct.unpack("<I", magic)[0] == _PCAPNG_SHB:
            yield from _pcapng(path, handle, batch)
        elif not magic:
            raise TraceReadError(path, None, "empty file: not a pcap or pcapng capture")
        else:
            raise TraceReadError(path, "byte 0", f"not a pcap or pcapng file (magic {magic.hex()})")


def _pcap(path: Path, f: BinaryIO, magic: bytes, batch: int) -> Iterator[PacketBatch]:
    order, tick = _PCAP_MAGIC[magic]
    rest = f.read(20)
    if len(rest) < 20:
        raise TraceReadError(path, "byte 4", "truncated pcap global header")
    _, _, _, _, _, linktype = struct.unpack(order + "HHiIII", rest)
    linktype &= 0x0FFFFFFF
    if linktype not in SUPPORTED_LINKTYPES:
        raise TraceReadError(
            path, "byte 20", f"unsupported link type {linktype} (Ethernet or raw IP)"
        )
    caplen_at = struct.Struct(order + "I").unpack_from
    dtype = np.dtype(order + "u4")
    number = 1
    base = 24  # file offset of the first unread byte
    rest = b""
    while True:
        more = f.read(4 << 20)
        buf = rest + more
        size = len(buf)
        if not size:
            break
        # walk the record headers (the only sequential part), then gather with numpy
        starts: list[int] = []
        pos = 0
        while pos + 16 <= size:
            end = pos + 16 + caplen_at(buf, pos + 8)[0]
            if end > size:
                break
            starts.append(pos)
            pos = end
        if not more and pos < size:
            where = f"packet {number + len(starts)} at byte {base + pos}"
            if size - pos < 16:
                raise TraceReadError(path, where, "truncated record header")
            caplen = caplen_at(buf, pos + 8)[0]
            raise TraceReadError(
                path,
                where,
                f"truncated packet: {caplen} bytes announced, {size - pos - 16} present",
            )
        if pos + 16 <= size and caplen_at(buf, pos + 8)[0] > MAX_CAPLEN:
            raise TraceReadError(
                path,
                f"packet {number + len(starts)} at byte {base + pos}",
                f"corrupt record: captured length {caplen_at(buf, pos + 8)[0]}",
            )
        if not starts:
            rest = buf
            continue
        n = len(starts)
        padded = buf + bytes(HEADER_BYTES)
        records = b"".join([buf[p : p + 16] for p in starts])
        fields = np.frombuffer(records, dtype=dtype).reshape(n, 4).astype(np.int64)
        joined = b"".join([padded[p + 16 : p + 16 + HEADER_BYTES] for p in starts])
        raw = np.frombuffer(joined, dtype=np.uint8).reshape(n, HEADER_BYTES)
        cols = np.arange(HEADER_BYTES)
        headers = np.where(cols < fields[:, 2:3], raw, 0).astype(np.uint8)
        for first in range(0, n, batch):
            sl = slice(first, min(first + batch, n))
            yield PacketBatch(
                headers[sl],
                fields[sl, 0] + fields[sl, 1] * tick,
                fields[sl, 3],
                np.full(sl.stop - sl.start, linktype, dtype=np.int64),
                np.arange(number + first, number + sl.stop, dtype=np.int64),
            )
        number += n
        base += pos
        rest = buf[pos:]


def _pcapng(path: Path, f: BinaryIO, batch: int) -> Iterator[PacketBatch]:
    """Blocks of a pcapng file (any number of sections and interfaces), packets batched.

    The loop only walks block headers and notes where enhanced packet blocks
    start; their fields, trailers and headers are then gathered with numpy.
    """
    order = "<"
    head, u32 = _pcapng_structs(order)
    interfaces: list[tuple[int, float]] = []
    buf = b"\x0a\x0d\x0d\x0a" + f.read(4 << 20)
    base = 0  # file offset of buf[0]
    pos = 0
    size = len(buf)
    number = 1  # number of the first packet in `starts`
    starts: list[int] = []  # positions in buf of packet blocks not yet gathered

    def flush() -> Iterator[PacketBatch]:
        nonlocal starts, number
        if starts:
            yield from _gather_epb(path, buf, base, starts, order, interfaces, number, batch)
            number += len(starts)
            starts = []

    while True:
        avail = size - pos
        need = 12
        if avail >= 12:
            btype, blen = head(buf, pos)
            if btype == _PCAPNG_SHB:
                yield from flush()
                bom = buf[pos + 8 : pos + 12]
                if bom not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
                    raise TraceReadError(path, f"byte {base + pos}", "bad pcapng byte-order magic")
                order = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
                head, u32 = _pcapng_structs(order)
                btype, blen = head(buf, pos)
                interfaces = []
            if blen < 12 or blen % 4 or blen > 1 << 26 or (btype == 6 and blen < 32):
                raise TraceReadError(path, f"byte {base + pos}", f"corrupt block (length {blen})")
            need = blen
        if avail < need:
            yield from flush()
            more = f.read(max(4 << 20, need - avail))
            if not more:
                if avail == 0:
                    break
                problem = (
                    "truncated block header"
                    if need == 12
                    else f"truncated block: {need} bytes announced"
                )
                raise TraceReadError(path, f"byte {base + pos}", problem)
            buf, base, pos = buf[pos:] + more, base + pos, 0
            size = len(buf)
            continue
        if btype == 6:  # enhanced packet block: gathered later
            starts.append(pos)
            pos += blen
            if len(starts) >= batch:
                yield from flush()
            continue
        if u32(buf, pos + blen - 4)[0] != blen:
            raise TraceReadError(
                path, f"byte {base + pos}", "corrupt block: trailing length differs"
            )
        if btype == 1:  # interface description
            linktype, _, _ = struct.unpack_from(order + "HHI", buf, pos + 8)
            if linktype not in SUPPORTED_LINKTYPES:
                raise TraceReadError(
                    path,
                    f"byte {base + pos}",
                    f"unsupported link type {linktype} (Ethernet or raw IP)",
                )
            interfaces.append((linktype, _tsresol(buf, order, pos + 16, pos + blen - 4)))
        elif btype == 2:  # obsolete packet block
            yield from flush()
            iface, _, hi, lo, caplen, wirelen = struct.unpack_from(order + "HHIIII", buf, pos + 8)
            if iface >= len(interfaces) or 32 + caplen > blen:
                raise TraceReadError(
                    path, f"packet {number} at byte {base + pos}", "corrupt packet block"
                )
            one = _Collector(1)
            one.first_number = number
            one.data.append(buf[pos + 28 : pos + 28 + min(caplen, HEADER_BYTES)])
            one.time.append(((hi << 32) | lo) * interfaces[iface][1])
            one.length.append(wirelen)
            one.linktype.append(interfaces[iface][0])
            yield one.take()
            number += 1
        elif btype == 3:
            raise TraceReadError(
                path, f"byte {base + pos}", "simple packet blocks carry no timestamp"
            )
        pos += blen
    yield from flush()


def _gather_epb(
    path: Path,
    buf: bytes,
    base: int,
    starts: list[int],
    order: str,
    interfaces: list[tuple[int, float]],
    number: int,
    batch: int,
) -> Iterator[PacketBatch]:
    """Enhanced packet blocks at ``starts`` in ``buf`` as batches (checked like the loop would)."""
    n = len(starts)
    u4 = np.dtype(order + "u4")
    view = np.frombuffer(buf, dtype=np.uint8)
    at = np.asarray(starts, dtype=np.int64)
    fields = view[at[:, None] + np.arange(4, 28)].view(u4).astype(np.int64)  # (n, 6)
    blen, iface, hi, lo, caplen, wirelen = fields.T
    trailer = view[(at + blen - 4)[:, None] + np.arange(4)].view(u4)[:, 0]
    for bad, problem in (
        (trailer != blen, "corrupt block: trailing length differs"),
        (iface >= len(interfaces), "unknown interface"),
        (32 + caplen > blen, "corrupt packet length"),
    ):
        if bad.any():
            k = int(np.argmax(bad))
            raise TraceReadError(path, f"packet {number + k} at byte {base + starts[k]}", problem)
    links = np.array([link for link, _ in interfaces], dtype=np.int64)[iface]
    ticks = np.array([tick for _, tick in interfaces])[iface]
    times = ((hi << 32) | lo).astype(np.float64) * ticks
    padded = buf[: starts[-1] + int(blen[-1])] + bytes(HEADER_BYTES)
    raw = np.frombuffer(
        b"".join([padded[p + 28 : p + 28 + HEADER_BYTES] for p in starts]), dtype=np.uint8
    ).reshape(n, HEADER_BYTES)
    headers = np.where(np.arange(HEADER_BYTES) < caplen[:, None], raw, 0).astype(np.uint8)
    for first in range(0, n, batch):
        sl = slice(first, min(first + batch, n))
        yield PacketBatch(
            headers[sl],
            times[sl],
            wirelen[sl],
            links[sl],
            np.arange(number + first, number + sl.stop, dtype=np.int64),
        )


def _pcapng_structs(order: str) -> tuple[Any, Any]:
    return struct.Struct(order + "II").unpack_from, struct.Struct(order + "I").unpack_from


def _tsresol(data: bytes, order: str, pos: int, end: int) -> float:
    """Seconds per timestamp tick from an interface block's options (default microseconds)."""
    while pos + 4 <= end:
        code, length = struct.unpack_from(order + "HH", data, pos)
        if code == 0:
            break
        if code == 9 and length >= 1:
            v = data[pos + 4]
            return 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0**-v
        pos += 4 + ((length + 3) & ~3)
    return 1e-6
