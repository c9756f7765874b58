"""Packet captures (pcap, pcapng) to traces: classify packets to slices, bin them into intervals.

Each packet is classified by the policy's match rules (``MatchRule``: DSCP,
outer VLAN id, IP prefixes on source or destination, protocol, and L4 ports on
source *or* destination); the first slice in policy order whose rule matches
wins. Packets no rule matches go to the policy's default slice when it has one;
otherwise they are counted apart in :class:`PcapStats` (and, with
``include_unmatched=True``, in an extra ``"unmatched"`` slice of the trace).

Direction: with ``ue_prefixes`` (the UE address pool, e.g. ``10.45.0.0/16``) a
packet from a UE address is uplink and one to a UE address is downlink. A
packet not decided that way takes its direction from the service port of the
rule that matched it: sent *from* the service port is downlink (server to
UE), sent *to* it uplink. Anything else counts as downlink.

Load is the on-wire frame length (the pcap ``orig_len``, so a short snap
length does not undercount) times 8, summed per interval and divided by the
interval: bit/s at layer 2. A silent interval is 0 bit/s. Headers are
decoded with numpy for a whole batch of packets at once (Ethernet with up to
two VLAN tags, or raw IP; IPv4 and IPv6 without extension headers; ports
only for first fragments).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sliceai.policy.model import MatchRule, Policy
from sliceai.traffic.binning import DEFAULT_CHUNK_INTERVALS, IntervalBinner, RowProblem
from sliceai.traffic.pcapformat import (
    DEFAULT_BATCH,
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    PacketBatch,
    read_packets,
)
from sliceai.traffic.trace import DL, UL, Trace, TraceError, TraceReadError

UNMATCHED = "unmatched"
_PROTOCOLS = {"tcp": (6, 6), "udp": (17, 17), "sctp": (132, 132), "icmp": (1, 58)}
U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]


@dataclass
class PcapStats:
    """Counts over the packets read so far (updated while the reader runs)."""

    packets: int = 0
    bytes: int = 0
    non_ip_packets: int = 0
    unmatched_packets: int = 0
    unmatched_bytes: int = 0
    slice_packets: dict[str, int] = field(default_factory=dict)


@dataclass
class Headers:
    """Decoded header fields of ``n`` packets, all ``(n,)`` except the addresses ``(n, 2)``.

    ``version`` 4, 6 or 0 (not IP); ``vlan`` and ports -1 when absent;
    addresses as two big-endian uint64 halves (IPv4 in the low 32 bits).
    """

    version: I64
    vlan: I64
    dscp: I64
    proto: I64
    src: U64
    dst: U64
    sport: I64
    dport: I64


def decode_headers(batch: PacketBatch) -> Headers:
    """Decode the header matrix of a batch with vectorised numpy indexing."""
    h = batch.headers
    n = len(h)
    rows = np.arange(n)
    width = h.shape[1]

    def at(cols: I64, k: int = 0) -> I64:
        """Byte ``cols + k`` of every row as int64 ``(n,)``."""
        picked: I64 = h[rows, np.minimum(cols + k, width - 1)].astype(np.int64)
        return picked

    def be(cols: I64, k: int, size: int) -> U64:
        """Big-endian unsigned ``size``-byte integer at ``cols + k`` of every row ``(n,)``."""
        out = np.zeros(n, dtype=np.uint64)
        for b in range(size):
            out = (out << np.uint64(8)) | at(cols, k + b).astype(np.uint64)
        return out

    eth = batch.linktype == LINKTYPE_ETHERNET
    zero = np.zeros(n, dtype=np.int64)
    ethertype = np.where(eth, (at(zero, 12) << 8) | at(zero, 13), 0)
    off = np.where(eth, 14, 0)
    vlan = np.full(n, -1, dtype=np.int64)
    for _ in range(2):
        tagged = eth & ((ethertype == 0x8100) | (ethertype == 0x88A8) | (ethertype == 0x9100))
        if not tagged.any():
            break
        tci = ((at(off) & 0x0F) << 8) | at(off, 1)
        vlan = np.where(tagged & (vlan < 0), tci, vlan)
        ethertype = np.where(tagged, (at(off, 2) << 8) | at(off, 3), ethertype)
        off = np.where(tagged, off + 4, off)
    first = at(off)
    nibble = first >> 4
    raw = ~eth
    v4 = (eth & (ethertype == 0x0800) & (nibble == 4)) | (
        raw & (nibble == 4) & (batch.linktype != LINKTYPE_IPV6)
    )
    v6 = (eth & (ethertype == 0x86DD) & (nibble == 6)) | (
        raw & (nibble == 6) & (batch.linktype != LINKTYPE_IPV4)
    )
    second = at(off, 1)
    dscp = np.where(v4, second >> 2, (((first & 0x0F) << 4) | (second >> 4)) >> 2)
    proto = np.where(v4, at(off, 9), at(off, 6))
    frag = ((at(off, 6) & 0x1F) << 8) | at(off, 7)
    l4 = np.where(v4, off + (first & 0x0F) * 4, off + 40)
    src = np.zeros((n, 2), dtype=np.uint64)
    dst = np.zeros((n, 2), dtype=np.uint64)
    if v4.any():
        src[:, 1] = np.where(v4, be(off, 12, 4), 0)
        dst[:, 1] = np.where(v4, be(off, 16, 4), 0)
    if v6.any():
        for half in range(2):
            src[v6, half] = be(off, 8 + 8 * half, 8)[v6]
            dst[v6, half] = be(off, 24 + 8 * half, 8)[v6]
    has_ports = (v4 & (frag == 0) | v6) & ((proto == 6) | (proto == 17) | (proto == 132))
    sport = np.where(has_ports, (at(l4) << 8) | at(l4, 1), -1)
    dport = np.where(has_ports, (at(l4, 2) << 8) | at(l4, 3), -1)
    version = np.where(v4, 4, np.where(v6, 6, 0))
    is_ip = version > 0
    return Headers(
        version,
        vlan,
        np.where(is_ip, dscp, -1),
        np.where(is_ip, proto, -1),
        src,
        dst,
        sport,
        dport,
    )


@dataclass(frozen=True)
class _Prefix:
    version: int
    net: tuple[int, int]
    mask: tuple[int, int]

    @classmethod
    def of(cls, prefix: ipaddress.IPv4Network | ipaddress.IPv6Network) -> _Prefix:
        bits = prefix.max_prefixlen
        net = int(prefix.network_address)
        mask = ((1 << bits) - 1) ^ ((1 << (bits - prefix.prefixlen)) - 1)
        if bits == 32:
            return cls(4, (0, net), (0, mask))
        full = (1 << 64) - 1
        return cls(6, (net >> 64, net & full), (mask >> 64, mask & full))

    def contains(self, version: I64, addr: U64) -> npt.NDArray[np.bool_]:
        hit: npt.NDArray[np.bool_] = np.asarray(version == self.version)
        for half in range(2):
            if self.mask[half]:
                m, v = np.uint64(self.mask[half]), np.uint64(self.net[half])
                hit &= (addr[:, half] & m) == v
        return hit


def _rule_mask(rule: MatchRule, hd: Headers) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    """Packets matching ``rule`` ``(n,)``, and per packet the direction its service port implies.

    The second array is DL (0) where the source port is a rule port, UL (1) where
    the destination port is, -1 where the rule has no ports.
    """
    hit = np.ones(len(hd.version), dtype=bool)
    if rule.dscp:
        hit &= np.isin(hd.dscp, rule.dscp)
    if rule.vlan is not None:
        hit &= hd.vlan == rule.vlan
    if rule.protocol is not None:
        v4_num, v6_num = _PROTOCOLS[rule.protocol]
        hit &= ((hd.version == 4) & (hd.proto == v4_num)) | (
            (hd.version == 6) & (hd.proto == v6_num)
        )
    if rule.ip_prefixes:
        any_prefix = np.zeros_like(hit)
        for p in map(_Prefix.of, rule.ip_prefixes):
            any_prefix |= p.contains(hd.version, hd.src) | p.contains(hd.version, hd.dst)
        hit &= any_prefix
    port_dir = np.full(len(hit), -1, dtype=np.int64)
    if rule.ports:
        from_port = np.zeros_like(hit)
        to_port = np.zeros_like(hit)
        for r in rule.ports:
            from_port |= (hd.sport >= r.first) & (hd.sport <= r.last)
            to_port |= (hd.dport >= r.first) & (hd.dport <= r.last)
        hit &= from_port | to_port
        port_dir = np.where(from_port, DL, UL)
    return hit, port_dir


class PacketClassifier:
    """Slice and direction of every packet of a batch by a policy's match rules."""

    def __init__(self, policy: Policy, ue_prefixes: Iterable[str] = ()) -> None:
        self.slices = policy.slice_names
        self.rules = [(i, rule) for i, s in enumerate(policy.slices) for rule in s.match]
        defaults = [i for i, s in enumerate(policy.slices) if s.default]
        self.default_index = defaults[0] if defaults else -1
        try:
            self.ue_prefixes = [_Prefix.of(ipaddress.ip_network(p)) for p in ue_prefixes]
        except ValueError as exc:
            raise TraceError(f"bad UE prefix: {exc}") from None

    def classify(self, hd: Headers) -> tuple[I64, I64, npt.NDArray[np.bool_]]:
        """``(slice index, direction, matched)`` per packet; slice -1 = unmatched, no default."""
        n = len(hd.version)
        slice_idx = np.full(n, -1, dtype=np.int64)
        direction = np.full(n, DL, dtype=np.int64)
        for i, rule in self.rules:
            hit, port_dir = _rule_mask(rule, hd)
            new = hit & (slice_idx < 0)
            slice_idx[new] = i
            direction[new & (port_dir >= 0)] = port_dir[new & (port_dir >= 0)]
        matched = slice_idx >= 0
        if self.ue_prefixes:
            from_ue = np.zeros(n, dtype=bool)
            to_ue = np.zeros(n, dtype=bool)
            for p in self.ue_prefixes:
                from_ue |= p.contains(hd.version, hd.src)
                to_ue |= p.contains(hd.version, hd.dst)
            direction[to_ue] = DL
            direction[from_ue] = UL
        slice_idx[~matched] = self.default_index
        return slice_idx, direction, matched


def read_pcap(
    path: str | Path,
    policy: Policy,
    *,
    interval_s: float = 1.0,
    start: float | None = None,
    ue_prefixes: Iterable[str] = (),
    include_unmatched: bool = False,
    chunk_intervals: int = DEFAULT_CHUNK_INTERVALS,
    batch: int = DEFAULT_BATCH,
    stats: PcapStats | None = None,
) -> Iterator[Trace]:
    """Stream a pcap/pcapng capture as trace chunks with the policy's slices (bit/s at L2).

    ``start`` (epoch s) defaults to the first packet's time floored to the
    interval. ``stats``, when given, is updated as packets are read. Raises
    :class:`TraceReadError` naming the file and the packet number / byte offset.
    """
    source = Path(path)
    classifier = PacketClassifier(policy, ue_prefixes)
    slices = classifier.slices + ((UNMATCHED,) if include_unmatched else ())
    counts = stats if stats is not None else PcapStats()
    counts.slice_packets = dict.fromkeys(classifier.slices, 0)
    binner: IntervalBinner | None = None
    try:
        for packets in read_packets(source, batch):
            if binner is None:
                t0 = float(packets.time[0]) if start is None else start
                origin = np.floor(t0 / interval_s) * interval_s if start is None else t0
                binner = IntervalBinner(
                    origin, interval_s, slices, "packets", chunk_intervals=chunk_intervals
                )
            hd = decode_headers(packets)
            slice_idx, direction, matched = classifier.classify(hd)
            _count(counts, packets, hd, slice_idx, matched, classifier.slices)
            keep = slice_idx >= 0
            if include_unmatched:
                slice_idx = np.where(keep, slice_idx, len(classifier.slices))
                keep = np.ones_like(keep)
            index = binner.interval_index(packets.time)
            if index[keep].min(initial=0) < 0:
                k = int(np.argmax(keep & (index < 0)))
                raise RowProblem(int(packets.number[k]), "packet is before the trace start")
            yield from binner.add(
                index[keep],
                slice_idx[keep],
                direction[keep],
                (packets.length[keep] * 8).astype(np.float64),
                packets.number[keep],
            )
            yield from binner.extend(int(index.max()))
        if binner is not None:
            yield from binner.finish()
    except RowProblem as exc:
        raise TraceReadError(source, f"packet {exc.row_tag}", exc.message) from None
    except TraceError as exc:
        if isinstance(exc, TraceReadError):
            raise
        raise TraceReadError(source, None, str(exc)) from None


def _count(
    counts: PcapStats,
    packets: PacketBatch,
    hd: Headers,
    slice_idx: I64,
    matched: npt.NDArray[np.bool_],
    names: tuple[str, ...],
) -> None:
    counts.packets += len(packets.length)
    counts.bytes += int(packets.length.sum())
    counts.non_ip_packets += int((hd.version == 0).sum())
    counts.unmatched_packets += int((~matched).sum())
    counts.unmatched_bytes += int(packets.length[~matched].sum())
    per_slice = np.bincount(slice_idx[slice_idx >= 0], minlength=len(names))
    for name, c in zip(names, per_slice.tolist(), strict=True):
        counts.slice_packets[name] += c
