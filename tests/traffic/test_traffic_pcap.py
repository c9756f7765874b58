"""pcap / pcapng: classification by match rules, direction, binning, errors with positions."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import dpkt
import numpy as np
import pytest

from sliceai.policy import Policy, loads_policy
from sliceai.traffic import Trace, TraceReadError
from sliceai.traffic.pcap import UNMATCHED, PcapStats, read_pcap

T0 = 1767571200.0
POLICY = """
name: t
slices:
  - name: haptics
    snssai: {sst: 2, sd: "000001"}
    five_qi: 85
    match: [{protocol: udp, ports: [5000], dscp: [46]}]
  - name: video
    snssai: {sst: 2, sd: "000002"}
    five_qi: 2
    match: [{protocol: udp, ports: [5004-5005]}]
  - name: robots
    snssai: {sst: 2, sd: "000003"}
    five_qi: 82
    match: [{vlan: 100, protocol: udp, ports: [6000-6001]}]
  - name: lab
    snssai: {sst: 1, sd: "000004"}
    five_qi: 9
    match: [{ip_prefixes: ["192.168.50.0/24", "2001:db8:5::/48"], protocol: tcp}]
{default}
topology:
  links: [{name: l, capacity: 1 Gbps, slices: [haptics, video, robots, lab{extra}]}]
"""


def _policy(with_default: bool) -> Policy:
    default = (
        '  - {name: embb, snssai: {sst: 1, sd: "000005"}, five_qi: 9, default: true}'
        if with_default
        else ""
    )
    text = POLICY.replace("{default}", default).replace("{extra}", ", embb" if with_default else "")
    return loads_policy(text)


def _frame(
    src: str,
    dst: str,
    *,
    proto: str = "udp",
    sport: int = 40000,
    dport: int = 5000,
    dscp: int = 0,
    size: int = 100,
    vlan: int | None = None,
) -> bytes:
    l4_cls: Any = dpkt.udp.UDP if proto == "udp" else dpkt.tcp.TCP
    l4 = l4_cls(sport=sport, dport=dport, data=b"x" * size)
    if ":" in src:
        ip: Any = dpkt.ip6.IP6(
            src=socket.inet_pton(socket.AF_INET6, src),
            dst=socket.inet_pton(socket.AF_INET6, dst),
            nxt=17 if proto == "udp" else 6,
            hlim=64,
            fc=dscp << 2,
            data=l4,
        )
        ip.plen = len(bytes(l4))
        ethertype = dpkt.ethernet.ETH_TYPE_IP6
    else:
        ip = dpkt.ip.IP(
            src=socket.inet_aton(src),
            dst=socket.inet_aton(dst),
            p=17 if proto == "udp" else 6,
            tos=dscp << 2,
            data=l4,
        )
        ethertype = dpkt.ethernet.ETH_TYPE_IP
    eth = dpkt.ethernet.Ethernet(src=b"\x01" * 6, dst=b"\x02" * 6, type=ethertype, data=ip)
    if vlan is not None:
        eth.vlan_tags = [dpkt.ethernet.VLANtag8021Q(id=vlan, type=ethertype)]
        eth.type = dpkt.ethernet.ETH_TYPE_8021Q
    return bytes(eth)


UE = "10.45.0.7"
SERVER = "192.168.1.10"
PACKETS = [
    # (time offset s, frame, expected slice, expected direction with --ue-prefix)
    (0.1, _frame(UE, SERVER, dport=5000, dscp=46), "haptics", 1),
    (0.2, _frame(UE, SERVER, dport=5000, dscp=0), None, 1),  # DSCP does not match
    (0.3, _frame(SERVER, UE, sport=5004, dport=40000), "video", 0),
    (0.4, _frame(SERVER, UE, sport=6000, dport=6001, vlan=100), "robots", 0),
    (1.5, _frame(UE, "192.168.50.9", proto="tcp", sport=50000, dport=80), "lab", 1),
    (1.6, _frame("2001:db8:5::1", "2001:db8:1::2", proto="tcp"), "lab", 0),
    (2.7, _frame(UE, "8.8.8.8", proto="tcp", dport=443), None, 1),
]


def _write(path: Path, packets: list[tuple[float, bytes]], *, ng: bool = False) -> None:
    with path.open("wb") as f:
        writer: Any = dpkt.pcapng.Writer(f) if ng else dpkt.pcap.Writer(f)
        for t, frame in packets:
            writer.writepkt(frame, ts=T0 + t)


@pytest.fixture(params=["pcap", "pcapng"])
def capture(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / f"cap.{request.param}"
    _write(path, [(t, f) for t, f, _, _ in PACKETS], ng=request.param == "pcapng")
    return path


def _expected(policy: Policy, by_ue: bool) -> np.ndarray:
    names = policy.slice_names
    out = np.zeros((3, len(names), 2))
    for t, frame, name, ue_dir in PACKETS:
        if name is None:
            if "embb" not in names:
                continue
            name = "embb"
        direction = ue_dir if by_ue else _port_direction(name, frame, ue_dir)
        out[int(t), names.index(name), direction] += len(frame) * 8
    return out


def _port_direction(name: str, frame: bytes, ue_dir: int) -> int:
    # without UE prefixes: from the service port = DL, to it = UL; no ports -> DL
    return ue_dir if name in ("haptics", "video") else 0


@pytest.mark.parametrize("by_ue", [True, False])
def test_classifies_bins_and_directions(capture: Path, by_ue: bool) -> None:
    policy = _policy(with_default=True)
    stats = PcapStats()
    prefixes = ["10.45.0.0/16"] if by_ue else []
    trace = Trace.concat(read_pcap(capture, policy, ue_prefixes=prefixes, stats=stats))
    assert trace.start == T0
    assert trace.slices == policy.slice_names
    np.testing.assert_array_equal(trace.load_bps, _expected(policy, by_ue))
    assert stats.packets == len(PACKETS)
    assert stats.unmatched_packets == 2  # counted apart even though the default slice takes them
    assert stats.slice_packets["lab"] == 2


def test_unmatched_without_default_is_counted_apart(capture: Path) -> None:
    policy = _policy(with_default=False)
    stats = PcapStats()
    trace = Trace.concat(read_pcap(capture, policy, ue_prefixes=["10.45.0.0/16"], stats=stats))
    np.testing.assert_array_equal(trace.load_bps, _expected(policy, by_ue=True))
    unmatched = [f for _, f, name, _ in PACKETS if name is None]
    assert stats.unmatched_bytes == sum(map(len, unmatched))
    with_column = Trace.concat(read_pcap(capture, policy, include_unmatched=True))
    assert with_column.slices[-1] == UNMATCHED
    assert with_column.load_bps[:, -1].sum() == stats.unmatched_bytes * 8


def test_interval_and_orig_len(tmp_path: Path) -> None:
    """Load counts the on-wire length even when the capture kept only a snap length."""
    frame = _frame(UE, SERVER, dport=5000, dscp=46, size=1000)
    path = tmp_path / "snap.pcap"
    with path.open("wb") as f:
        writer = dpkt.pcap.Writer(f, snaplen=64)
        for k in range(8):
            writer.writepkt(frame[:64], ts=T0 + 0.25 * k)
    # dpkt writes orig_len = len(data); patch the records to say the frame was longer
    raw = bytearray(path.read_bytes())
    pos = 24
    while pos < len(raw):
        raw[pos + 12 : pos + 16] = len(frame).to_bytes(4, "little")
        pos += 16 + 64
    path.write_bytes(bytes(raw))
    trace = Trace.concat(read_pcap(path, _policy(True), interval_s=0.5))
    assert trace.n_intervals == 4
    np.testing.assert_array_equal(trace.load_bps[:, 0, 1], 2 * len(frame) * 8 / 0.5)


def test_truncated_pcap_names_packet_and_byte(tmp_path: Path) -> None:
    path = tmp_path / "cut.pcap"
    frames = [(0.1 * k, _frame(UE, SERVER, size=100)) for k in range(5)]
    _write(path, frames)
    data = path.read_bytes()
    record = 16 + len(frames[0][1])
    path.write_bytes(data[: 24 + 3 * record + 30])  # inside packet 4
    with pytest.raises(TraceReadError, match="truncated packet") as info:
        list(read_pcap(path, _policy(True)))
    assert info.value.position == f"packet 4 at byte {24 + 3 * record}"
    path.write_bytes(data[: 24 + 2 * record + 7])  # inside the header of packet 3
    with pytest.raises(TraceReadError, match="truncated record header") as info:
        list(read_pcap(path, _policy(True)))
    assert info.value.position == f"packet 3 at byte {24 + 2 * record}"


def test_truncated_pcapng_and_garbage(tmp_path: Path) -> None:
    path = tmp_path / "cut.pcapng"
    _write(path, [(0.1 * k, _frame(UE, SERVER)) for k in range(5)], ng=True)
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(TraceReadError, match=r"truncated block") as info:
        list(read_pcap(path, _policy(True)))
    assert info.value.position is not None
    assert info.value.position.startswith("byte ")
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"hello world, not a capture")
    with pytest.raises(TraceReadError, match="not a pcap or pcapng file"):
        list(read_pcap(junk, _policy(True)))
    corrupt = tmp_path / "corrupt.pcap"
    raw = bytearray(_pcap_bytes(tmp_path))
    raw[24 + 8 : 24 + 12] = (10**8).to_bytes(4, "little")  # absurd captured length
    corrupt.write_bytes(bytes(raw))
    with pytest.raises(TraceReadError, match="corrupt record") as info:
        list(read_pcap(corrupt, _policy(True)))
    assert info.value.position == "packet 1 at byte 24"


def _pcap_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "ok.pcap"
    _write(path, [(0.0, _frame(UE, SERVER))] * 3)
    return path.read_bytes()


def test_many_packets_stream_in_chunks(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    times = np.sort(rng.uniform(0, 120, 3000))
    frame = _frame(SERVER, UE, sport=5004, dport=40000, size=500)
    path = tmp_path / "many.pcap"
    _write(path, [(float(t), frame) for t in times])
    chunks = list(read_pcap(path, _policy(True), chunk_intervals=16, batch=256))
    assert len(chunks) > 4
    trace = Trace.concat(chunks)
    counts = np.bincount(np.floor(times).astype(int), minlength=trace.n_intervals)
    np.testing.assert_array_equal(trace.load_bps[:, 1, 0], counts * len(frame) * 8)


def _block(btype: int, body: bytes, order: str = "<") -> bytes:
    import struct

    body += b"\0" * (-len(body) % 4)
    n = 12 + len(body)
    return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", n)


def _pcapng_two_interfaces(order: str, frames: list[tuple[int, float, bytes]]) -> bytes:
    """SHB, an Ethernet interface in microseconds and one in nanoseconds (if_tsresol 9)."""
    import struct

    shb = _block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1), order)
    idb_us = _block(1, struct.pack(order + "HHI", 1, 0, 65535), order)
    tsresol = struct.pack(order + "HH", 9, 1) + b"\x09\0\0\0" + struct.pack(order + "HH", 0, 0)
    idb_ns = _block(1, struct.pack(order + "HHI", 1, 0, 65535) + tsresol, order)
    parts = [shb, idb_us, idb_ns]
    for iface, t, frame in frames:
        ticks = round(t * (1e6 if iface == 0 else 1e9))
        head = struct.pack(
            order + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame)
        )
        parts.append(_block(6, head + frame, order))
    return b"".join(parts)


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_interfaces_resolutions_and_byte_order(tmp_path: Path, order: str) -> None:
    haptic = _frame(UE, SERVER, dport=5000, dscp=46, size=50)
    video = _frame(SERVER, UE, sport=5004, dport=40000, size=900)
    frames = [
        (0, T0 + 0.2, haptic),
        (1, T0 + 0.7, video),
        (1, T0 + 1.9, haptic),
        (0, T0 + 2.1, video),
    ]
    path = tmp_path / "two.pcapng"
    path.write_bytes(_pcapng_two_interfaces(order, frames))
    trace = Trace.concat(read_pcap(path, _policy(True), ue_prefixes=["10.45.0.0/16"]))
    np.testing.assert_array_equal(trace.load_bps[:, 0, 1], [len(haptic) * 8, len(haptic) * 8, 0])
    np.testing.assert_array_equal(trace.load_bps[:, 1, 0], [len(video) * 8, 0, len(video) * 8])
    # a packet block whose trailing length disagrees is named by packet number and offset
    raw = bytearray(path.read_bytes())
    third = raw.index(haptic, raw.index(haptic) + 1) - 28
    end = third + int.from_bytes(raw[third + 4 : third + 8], "little" if order == "<" else "big")
    raw[end - 4 : end] = b"\x01\x02\x03\x04"
    path.write_bytes(bytes(raw))
    with pytest.raises(TraceReadError, match="trailing length differs") as info:
        list(read_pcap(path, _policy(True)))
    assert info.value.position == f"packet 3 at byte {third}"


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_pcap_byte_orders_and_resolutions(tmp_path: Path, order: str, nano: bool) -> None:
    """Each libpcap magic: byte order, micro/nanosecond ticks, orig_len and link type."""
    import struct

    from sliceai.traffic.pcapformat import HEADER_BYTES, read_packets

    frames = [_frame(UE, SERVER, size=10), _frame(SERVER, UE, sport=5004, size=300)]
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    parts = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, 101)]
    for k, frame in enumerate(frames):
        ip = frame[14:]  # raw IP link type
        frac = 123456789 if nano else 123456
        parts.append(struct.pack(order + "IIII", int(T0) + k, frac, len(ip), len(ip) + 4))
        parts.append(ip)
    path = tmp_path / "orders.pcap"
    path.write_bytes(b"".join(parts))
    (batch,) = read_packets(path)
    np.testing.assert_allclose(batch.time, T0 + np.arange(2) + 0.123456789, atol=1e-6)
    np.testing.assert_array_equal(batch.length, [len(f) - 14 + 4 for f in frames])
    np.testing.assert_array_equal(batch.linktype, [101, 101])
    np.testing.assert_array_equal(batch.number, [1, 2])
    assert bytes(batch.headers[0, : len(frames[0]) - 14]) == frames[0][14:]
    assert not batch.headers[0, len(frames[0]) - 14 :].any()
    assert bytes(batch.headers[1]) == frames[1][14 : 14 + HEADER_BYTES]
