"""The vectorised header decoder agrees with dpkt's own parse on random packets."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import dpkt
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sliceai.traffic.pcap import decode_headers
from sliceai.traffic.pcapformat import read_packets

packet = st.fixed_dictionaries(
    {
        "v6": st.booleans(),
        "proto": st.sampled_from([6, 17, 1]),
        "dscp": st.integers(0, 63),
        "vlan": st.one_of(st.none(), st.integers(0, 4095)),
        "qinq": st.booleans(),
        "sport": st.integers(0, 65535),
        "dport": st.integers(0, 65535),
        "src": st.integers(0, 2**128 - 1),
        "dst": st.integers(0, 2**128 - 1),
        "size": st.integers(0, 300),
        "options": st.integers(0, 10),
        "fragment": st.booleans(),
    }
)


def _build(p: dict[str, Any]) -> bytes:
    payload = b"p" * p["size"]
    l4: Any
    if p["proto"] == 6:
        l4 = dpkt.tcp.TCP(sport=p["sport"], dport=p["dport"], data=payload)
    elif p["proto"] == 17:
        l4 = dpkt.udp.UDP(sport=p["sport"], dport=p["dport"], data=payload)
    else:
        l4 = dpkt.icmp.ICMP(type=8, data=payload)
    if p["v6"]:
        ip: Any = dpkt.ip6.IP6(
            src=p["src"].to_bytes(16, "big"),
            dst=p["dst"].to_bytes(16, "big"),
            nxt=p["proto"] if p["proto"] != 1 else 58,
            hlim=64,
            fc=p["dscp"] << 2,
            data=l4,
        )
        ip.plen = len(bytes(l4))
        ethertype = dpkt.ethernet.ETH_TYPE_IP6
    else:
        ip = dpkt.ip.IP(
            src=(p["src"] & 0xFFFFFFFF).to_bytes(4, "big"),
            dst=(p["dst"] & 0xFFFFFFFF).to_bytes(4, "big"),
            p=p["proto"],
            tos=p["dscp"] << 2,
            opts=b"\x01" * (4 * p["options"]),
            hl=5 + p["options"],
            offset=56 if p["fragment"] else 0,  # bytes; a non-first fragment has no L4 header
            data=l4,
        )
        ethertype = dpkt.ethernet.ETH_TYPE_IP
    eth = dpkt.ethernet.Ethernet(src=b"\x01" * 6, dst=b"\x02" * 6, type=ethertype, data=ip)
    frame = bytes(eth)
    if p["vlan"] is not None:
        tags = [(0x8100, p["vlan"])] + ([(0x8100, 7)] if p["qinq"] else [])
        inserted = b"".join(t.to_bytes(2, "big") + vid.to_bytes(2, "big") for t, vid in tags)
        frame = frame[:12] + inserted + frame[12:]
    return frame


@settings(max_examples=30, deadline=None)
@given(st.lists(packet, min_size=1, max_size=40))
def test_decoder_matches_dpkt(tmp_path_factory: Any, packets: list[dict[str, Any]]) -> None:
    frames = [_build(p) for p in packets]
    path: Path = tmp_path_factory.mktemp("dec") / "x.pcap"
    with path.open("wb") as f:
        writer = dpkt.pcap.Writer(f)
        for k, frame in enumerate(frames):
            writer.writepkt(frame, ts=1000.0 + k)
    (batch,) = list(read_packets(path))
    hd = decode_headers(batch)
    np.testing.assert_array_equal(batch.length, [len(f) for f in frames])
    for k, p in enumerate(packets):
        assert hd.version[k] == (6 if p["v6"] else 4)
        assert hd.vlan[k] == (-1 if p["vlan"] is None else p["vlan"])
        assert hd.dscp[k] == p["dscp"]
        proto = 58 if p["v6"] and p["proto"] == 1 else p["proto"]
        assert hd.proto[k] == proto
        has_ports = p["proto"] in (6, 17) and (p["v6"] or not p["fragment"])
        assert hd.sport[k] == (p["sport"] if has_ports else -1)
        assert hd.dport[k] == (p["dport"] if has_ports else -1)
        if p["v6"]:
            src = int(hd.src[k, 0]) << 64 | int(hd.src[k, 1])
            assert ipaddress.IPv6Address(src) == ipaddress.IPv6Address(p["src"])
            assert int(hd.dst[k, 0]) << 64 | int(hd.dst[k, 1]) == p["dst"]
        else:
            assert int(hd.src[k, 1]) == p["src"] & 0xFFFFFFFF
            assert int(hd.dst[k, 1]) == p["dst"] & 0xFFFFFFFF
