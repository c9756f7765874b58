"""Record-level reading of pcap and pcapng capture files through dpkt, with exact error positions.

The containers are decoded by dpkt: the libpcap global header by
:class:`dpkt.pcap.Reader` (magic, byte order, link type) and each record header
by dpkt's ``PktHdr`` class for that magic (the reader's own iteration drops the
on-wire length); pcapng section, interface and packet blocks by
:mod:`dpkt.pcapng`'s block classes (``SectionHeaderBlock``,
``InterfaceDescriptionBlock``, ``EnhancedPacketBlock``, ``PacketBlock``), walked
here because :class:`dpkt.pcapng.Reader` only knows the first interface of the
first section. dpkt's exceptions become :class:`TraceReadError` naming the file,
the packet number and the byte offset.

Both formats yield :class:`PacketBatch` es: up to ``batch`` packets as a
fixed-width header matrix (the first :data:`HEADER_BYTES` captured bytes of each
packet, zero-padded) plus timestamps, on-wire lengths and link types, so the
classifier can decode every header field with numpy at once. Timestamps honour
the microsecond/nanosecond pcap magic and the pcapng ``if_tsresol`` option.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import dpkt
import numpy as np
import numpy.typing as npt

from sliceai.traffic.trace import TraceReadError

HEADER_BYTES = 96
_ZEROS = bytes(HEADER_BYTES)
MAX_CAPLEN = 262144  # the largest snap length libpcap writes
MAX_BLOCK = 1 << 26
DEFAULT_BATCH = 65536
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
SUPPORTED_LINKTYPES = (LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6)
_PCAP_TICK = {
    b"\xd4\xc3\xb2\xa1": 1e-6,
    b"\xa1\xb2\xc3\xd4": 1e-6,
    b"\x4d\x3c\xb2\xa1": 1e-9,
    b"\xa1\xb2\x3c\x4d": 1e-9,
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
_BOM = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
_DPKT_ERRORS = (dpkt.Error, ValueError, struct.error, IndexError)
# pcapng block classes of dpkt by byte order: (section, interface, enhanced packet, packet)
_NG_BLOCKS: dict[str, tuple[Any, Any, Any, Any]] = {
    "<": (
        dpkt.pcapng.SectionHeaderBlockLE,
        dpkt.pcapng.InterfaceDescriptionBlockLE,
        dpkt.pcapng.EnhancedPacketBlockLE,
        dpkt.pcapng.PacketBlockLE,
    ),
    ">": (
        dpkt.pcapng.SectionHeaderBlock,
        dpkt.pcapng.InterfaceDescriptionBlock,
        dpkt.pcapng.EnhancedPacketBlock,
        dpkt.pcapng.PacketBlock,
    ),
}


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

    def take(self, linktype: int | None = None) -> PacketBatch:
        """The gathered packets as a batch (``linktype`` for all of them, else per packet)."""
        n = len(self.time)
        # zero-pad short rows to the fixed width, then one frombuffer over the joined rows
        width, zeros = HEADER_BYTES, _ZEROS
        rows = [d if len(d) == width else (d + zeros)[:width] for d in self.data]
        headers = np.frombuffer(bytearray(b"".join(rows)), dtype=np.uint8).reshape(n, width)
        out = PacketBatch(
            headers,
            np.asarray(self.time, dtype=np.float64),
            np.asarray(self.length, dtype=np.int64),
            np.asarray(self.linktype, dtype=np.int64)
            if linktype is None
            else np.full(n, linktype, dtype=np.int64),
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
        handle.seek(0)
        if magic in _PCAP_TICK:
            yield from _pcap(path, handle, magic, batch)
        elif magic == _PCAPNG_SHB:
            yield from _pcapng(path, handle, batch)
        elif not magic:
            raise TraceReadError(path, None, "empty file: not a pcap or pcapng capture")
        else:
            raise TraceReadError(path, "byte 0", f"not a pcap or pcapng file (magic {magic.hex()})")


def _pcap(path: Path, f: BinaryIO, magic: bytes, batch: int) -> Iterator[PacketBatch]:
    """Records of a libpcap file: global header by ``dpkt.pcap.Reader``, records by ``PktHdr``.

    The reader's own iteration yields only ``(timestamp, data)``, losing the
    on-wire ``len``, so each record header is unpacked by dpkt's ``PktHdr`` class
    for this magic (one object, re-unpacked) and the payload read after it.
    """
    try:
        reader = dpkt.pcap.Reader(f)
    except _DPKT_ERRORS:
        raise TraceReadError(path, "byte 4", "truncated or corrupt pcap global header") from None
    linktype = reader.datalink() & 0x0FFFFFFF
    if linktype not in SUPPORTED_LINKTYPES:
        raise TraceReadError(
            path, "byte 20", f"unsupported link type {linktype} (Ethernet or raw IP)"
        )
    tick = _PCAP_TICK[magic]
    pkthdr = dpkt.pcap.MAGIC_TO_PKT_HDR[int.from_bytes(magic, "big")]
    hdr_len = pkthdr.__hdr_len__
    hdr = pkthdr()  # one dpkt header object, re-unpacked for every record
    unpack = hdr.unpack
    read = f.read
    out = _Collector(batch)
    data, time, length = out.data, out.time, out.length
    number = 1
    while True:
        head = read(hdr_len)
        if not head:
            break
        try:
            unpack(head)
        except _DPKT_ERRORS:
            at = f.tell() - len(head)
            raise TraceReadError(
                path, f"packet {number} at byte {at}", "truncated record header"
            ) from None
        caplen = hdr.caplen
        if caplen > MAX_CAPLEN:
            at = f.tell() - hdr_len
            raise TraceReadError(
                path, f"packet {number} at byte {at}", f"corrupt record: captured length {caplen}"
            )
        body = read(caplen)
        if len(body) < caplen:
            at = f.tell() - len(body) - hdr_len
            raise TraceReadError(
                path,
                f"packet {number} at byte {at}",
                f"truncated packet: {caplen} bytes announced, {len(body)} present",
            )
        data.append(body[:HEADER_BYTES])
        time.append(hdr.tv_sec + hdr.tv_usec * tick)
        length.append(hdr.len)
        number += 1
        if len(time) >= batch:
            yield out.take(linktype)
            data, time, length = out.data, out.time, out.length
    if time:
        yield out.take(linktype)


def _pcapng(path: Path, f: BinaryIO, batch: int) -> Iterator[PacketBatch]:
    """Blocks of a pcapng file (any number of sections and interfaces), decoded by dpkt.

    Each block's length is read here (to bound the read and report positions).
    Section and interface blocks are unpacked whole by their ``dpkt.pcapng``
    class (options included, trailing length checked by dpkt); for (enhanced)
    packet blocks only dpkt's fixed header is unpacked, into one reused object,
    and the trailing length is compared here: a full dpkt unpack per packet
    (option list, new object) halves the reading rate.
    """
    read = f.read
    order = "<"
    shb_cls, idb_cls, _, _ = _NG_BLOCKS[order]
    head_of = struct.Struct(order + "II").unpack
    # one dpkt packet-block object per byte order and type, re-unpacked for every block
    heads = {o: {6: c[2](), 2: c[3]()} for o, c in _NG_BLOCKS.items()}
    interfaces: list[tuple[int, float]] = []
    out = _Collector(batch)
    data, time, length, links = out.data, out.time, out.length, out.linktype
    number = 1
    offset = 0  # file offset of the block being read
    while True:
        head = read(8)
        if not head:
            break
        if len(head) < 8:
            raise TraceReadError(path, f"byte {offset}", "truncated block header")
        if head[:4] == _PCAPNG_SHB:
            bom = read(4)
            if len(bom) < 4:
                raise TraceReadError(path, f"byte {offset}", "truncated block header")
            if bom not in _BOM:
                raise TraceReadError(path, f"byte {offset}", "bad pcapng byte-order magic")
            order = _BOM[bom]
            shb_cls, idb_cls, _, _ = _NG_BLOCKS[order]
            head_of = struct.Struct(order + "II").unpack
            head += bom
            interfaces = []
        btype, blen = head_of(head[:8])
        if blen < 12 or blen % 4 or blen > MAX_BLOCK or (btype in (2, 6) and blen < 32):
            raise TraceReadError(path, f"byte {offset}", f"corrupt block (length {blen})")
        rest = read(blen - len(head))
        if len(rest) < blen - len(head):
            raise TraceReadError(path, f"byte {offset}", f"truncated block: {blen} bytes announced")
        if btype == 6 or btype == 2:  # (enhanced) packet block: rest is buf[8:]
            block = heads[order][btype]
            try:
                block.unpack_hdr(head + rest[:24])
            except _DPKT_ERRORS:
                raise TraceReadError(
                    path, f"packet {number} at byte {offset}", "corrupt packet block"
                ) from None
            if rest[-4:] != head[4:]:
                raise TraceReadError(
                    path,
                    f"packet {number} at byte {offset}",
                    "corrupt block: trailing length differs",
                )
            caplen = block.caplen
            if block.iface_id >= len(interfaces) or 32 + caplen > blen:
                problem = (
                    "unknown interface"
                    if block.iface_id >= len(interfaces)
                    else "corrupt packet length"
                )
                raise TraceReadError(path, f"packet {number} at byte {offset}", problem)
            link, tick = interfaces[block.iface_id]
            data.append(rest[20 : 20 + (caplen if caplen < HEADER_BYTES else HEADER_BYTES)])
            time.append(((block.ts_high << 32) | block.ts_low) * tick)
            length.append(block.pkt_len)
            links.append(link)
            number += 1
            offset += blen
            if len(time) >= batch:
                yield out.take()
                data, time, length, links = out.data, out.time, out.length, out.linktype
            continue
        buf = head + rest
        if btype == 3:
            raise TraceReadError(path, f"byte {offset}", "simple packet blocks carry no timestamp")
        elif btype in (0x0A0D0D0A, 1):
            try:
                block = (idb_cls if btype == 1 else shb_cls)(buf)
            except dpkt.UnpackError:
                raise TraceReadError(
                    path, f"byte {offset}", "corrupt block: trailing length differs"
                ) from None
            except _DPKT_ERRORS:
                raise TraceReadError(path, f"byte {offset}", "corrupt block") from None
            if btype == 1:
                if block.linktype not in SUPPORTED_LINKTYPES:
                    raise TraceReadError(
                        path,
                        f"byte {offset}",
                        f"unsupported link type {block.linktype} (Ethernet or raw IP)",
                    )
                interfaces.append((block.linktype, _tsresol(block)))
        elif struct.unpack(order + "I", buf[-4:])[0] != blen:
            raise TraceReadError(path, f"byte {offset}", "corrupt block: trailing length differs")
        offset += blen
    if out.time:
        yield out.take()


def _tsresol(idb: Any) -> float:
    """Seconds per timestamp tick from a dpkt interface block's options (default microseconds)."""
    for opt in idb.opts:
        if opt.code == dpkt.pcapng.PCAPNG_OPT_IF_TSRESOL and opt.data:
            v = int(opt.data[0])
            return 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0**-v
    return 1e-6
