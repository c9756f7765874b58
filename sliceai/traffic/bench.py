"""``sliceai bench traffic``: generator, pcap reader and long-CSV reader throughput.

Figures (higher is better, so ratio > 1 means faster than the peer):
- generation: interval-rows/s (intervals x slices x 2 directions) of the
  bundled scenarios; the eMBB slice model alone against the same model written
  as a plain-Python per-interval loop.
- pcap: packets/s read (the container through dpkt's pcap/pcapng readers and
  block classes), classified and binned, against a bare dpkt loop that only
  iterates the file and parses Ethernet/IP (no classification, no binning).
- long CSV: rows/s read into trace chunks, against ``csv.reader`` parsing only.
"""

from __future__ import annotations

import csv
import math
import random
import socket
import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import dpkt
import numpy as np

from sliceai.bench import Figure, time_calls
from sliceai.policy.loader import loads_policy
from sliceai.traffic.generators import Clock, generate, load_scenario, resolve_slices, slice_load
from sliceai.traffic.longcsv import read_long_csv, write_long_csv
from sliceai.traffic.pcap import read_pcap
from sliceai.traffic.scenario_model import Level, Scenario, Sessions, SliceSettings

START = 1767571200.0  # 2026-01-05 00:00 UTC, a Monday
BENCH_POLICY = """
name: bench
slices:
  - name: haptics
    snssai: {sst: 2, sd: "000001"}
    five_qi: 85
    match: [{protocol: udp, ports: [5000], dscp: [46]}]
  - name: video
    snssai: {sst: 2, sd: "000002"}
    five_qi: 2
    match: [{protocol: udp, ports: [5004-5005]}]
  - name: consults
    snssai: {sst: 1, sd: "000003"}
    five_qi: 2
    match: [{protocol: tcp, ports: [8443]}]
  - name: vitals
    snssai: {sst: 3, sd: "000004"}
    five_qi: 82
    match: [{protocol: udp, ports: [6000-6100]}]
  - {name: embb, snssai: {sst: 1, sd: "000005"}, five_qi: 9, default: true}
topology:
  links: [{name: l1, capacity: 1 Gbps, slices: [haptics, video, consults, vitals, embb]}]
"""


def _best(fn: Callable[[], object], repeat: int) -> float:
    """Fastest wall-clock seconds of ``repeat`` calls (after one warm-up call)."""
    return min(time_calls(fn, repeat))


def run(quick: bool) -> Iterator[Figure]:
    yield from _generation(quick)
    with tempfile.TemporaryDirectory(prefix="sliceai-bench-traffic-") as tmp:
        yield from _pcap(Path(tmp), quick)
        yield from _long_csv(Path(tmp), quick)


def _generation(quick: bool) -> Iterator[Figure]:
    days = 0.1 if quick else 1.0
    repeat = 2 if quick else 3
    for name in ("hospital", "factory", "campus"):
        scenario = load_scenario(name)
        n = round(days * 86400)

        def once(s: Scenario = scenario, n: int = n) -> None:
            generate(s, start=START, n_intervals=n, interval_s=1.0, seed=1)

        seconds = _best(once, repeat)
        rows = n * 2 * sum(1 for _ in resolve_slices(scenario))
        yield Figure(
            "traffic",
            f"generate {name} {days:g} d @ 1 s",
            "rate",
            rows / seconds,
            "rows/s",
            note="rows = intervals x slices x 2 directions; target >= 1e6",
        )
    embb = _embb_slice()
    n_small = 3600 if quick else 4 * 3600
    clock = Clock(START, 1.0, n_small, 1.0)
    ours = _best(lambda: slice_load(embb, clock, 1), repeat)
    peer = _best(lambda: _python_embb(embb, n_small, 1), 1)
    yield Figure.compare(
        "traffic",
        f"generate eMBB slice {n_small} intervals",
        "rate",
        n_small * 2 / ours,
        "rows/s",
        "plain-Python loop",
        n_small * 2 / peer,
    )


def _embb_slice() -> SliceSettings:
    hospital = load_scenario("hospital")
    return next(s for s in hospital.slices if s.name == "staff-embb")


def _python_embb(settings: SliceSettings, n: int, seed: int) -> list[tuple[float, float]]:
    """The same eMBB model (level x profiles x noise + flash crowds), one interval at a time."""
    rng = random.Random(seed)
    level = next(c for c in settings.components if isinstance(c, Level))
    crowds = next(c for c in settings.components if isinstance(c, Sessions))
    noise_state = [[0.0, 0.0], [0.0, 0.0]]
    active: list[tuple[int, float]] = []
    out = []
    for t in range(n):
        local = START + 3600.0 + t
        hour = (local / 3600.0) % 24
        weekday = (int(local // 86400) + 3) % 7
        h0 = int(hour)
        day = level.day or (1.0,) * 24
        frac = hour - h0
        profile = day[h0] * (1 - frac) + day[(h0 + 1) % 24] * frac
        profile *= (level.week or (1.0,) * 7)[weekday]
        rates = []
        for d, split in enumerate((level.split.dl, level.split.ul)):
            factor = 1.0
            for k, noise in enumerate((level.noise, level.drift)):
                if noise is None:
                    continue
                phi = math.exp(-1.0 / noise.corr)
                noise_state[k][d] = phi * noise_state[k][d] + math.sqrt(1 - phi * phi) * rng.gauss(
                    0, 1
                )
                factor *= math.exp(noise.sigma * noise_state[k][d] - noise.sigma**2 / 2)
            rates.append(level.rate * profile * split * factor)
        if rng.random() < crowds.per_hour / 3600.0:
            dur = crowds.duration.median * math.exp(crowds.duration.sigma * rng.gauss(0, 1))
            rate = crowds.rate.median * math.exp(crowds.rate.sigma * rng.gauss(0, 1))
            active.append((t + max(1, round(dur)), min(rate, crowds.rate.max or math.inf)))
        active = [(end, r) for end, r in active if end > t]
        extra = sum(r for _, r in active)
        out.append((rates[0] + extra, rates[1] + extra * crowds.split.ul))
    return out


def _frame(src: str, dst: str, proto: int, sport: int, dport: int, dscp: int, size: int) -> bytes:
    payload = b"\0" * size
    l4 = (
        struct.pack("!HHHH", sport, dport, 8 + size, 0)
        if proto == 17
        else struct.pack("!HHIIBBHHH", sport, dport, 0, 0, 0x50, 0x10, 65535, 0, 0)
    )
    total = 20 + len(l4) + size
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, dscp << 2, total, 0, 0, 64, proto, 0,
        socket.inet_aton(src), socket.inet_aton(dst),
    )  # fmt: skip
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + l4 + payload


def _packets(n: int) -> tuple[list[bytes], list[int], list[float]]:
    """A mix of five flows: frames, which frame each packet is, and arrival times (epoch s)."""
    frames = [
        _frame("10.45.0.2", "192.168.1.10", 17, 40000, 5000, 46, 80),
        _frame("192.168.1.10", "10.45.0.2", 17, 5004, 40000, 34, 1200),
        _frame("10.45.0.3", "192.168.1.11", 6, 50000, 8443, 0, 600),
        _frame("10.9.1.7", "192.168.1.12", 17, 6001, 6001, 0, 120),
        _frame("10.45.0.4", "8.8.8.8", 6, 51000, 443, 0, 1400),
    ]
    rng = np.random.default_rng(7)
    kinds = rng.integers(0, len(frames), n).tolist()
    times = (START + np.cumsum(rng.exponential(1e-4, n))).tolist()
    return frames, kinds, times


def _write_pcap(path: Path, n: int) -> None:
    frames, kinds, times = _packets(n)
    parts = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for k, t in zip(kinds, times, strict=True):
        sec = int(t)
        frame = frames[k]
        parts.append(struct.pack("<IIII", sec, int((t - sec) * 1e6), len(frame), len(frame)))
        parts.append(frame)
    path.write_bytes(b"".join(parts))


def _write_pcapng(path: Path, n: int) -> None:
    frames, kinds, times = _packets(n)
    shb = struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28)
    idb = struct.pack("<IIHHII", 1, 20, 1, 0, 65535, 20)
    parts = [shb, idb]
    for k, t in zip(kinds, times, strict=True):
        frame = frames[k]
        pad = -len(frame) % 4
        blen = 32 + len(frame) + pad
        ticks = round(t * 1e6)
        parts.append(
            struct.pack(
                "<IIIIIII", 6, blen, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame)
            )
        )
        parts.append(frame + b"\0" * pad + struct.pack("<I", blen))
    path.write_bytes(b"".join(parts))


def _pcap(tmp: Path, quick: bool) -> Iterator[Figure]:
    n = 50_000 if quick else 500_000
    path = tmp / "bench.pcap"
    _write_pcap(path, n)
    policy = loads_policy(BENCH_POLICY)

    def ours() -> None:
        for _ in read_pcap(path, policy, interval_s=1.0, ue_prefixes=["10.45.0.0/16"]):
            pass

    def bare_dpkt() -> None:
        with path.open("rb") as f:
            for _ts, buf in dpkt.pcap.Reader(f):
                dpkt.ethernet.Ethernet(buf)

    repeat = 2 if quick else 3
    yield Figure.compare(
        "traffic",
        f"read pcap {n} packets",
        "rate",
        n / _best(ours, repeat),
        "packets/s",
        "bare dpkt parse loop",
        n / _best(bare_dpkt, 1),
        note="container read by dpkt; classify by policy match rules + bin into 1 s intervals;"
        " target >= 200,000",
    )
    ng = tmp / "bench.pcapng"
    _write_pcapng(ng, n)

    def ours_ng() -> None:
        for _ in read_pcap(ng, policy, interval_s=1.0, ue_prefixes=["10.45.0.0/16"]):
            pass

    def bare_dpkt_ng() -> None:
        with ng.open("rb") as f:
            for _ts, buf in dpkt.pcapng.Reader(f):
                dpkt.ethernet.Ethernet(buf)

    yield Figure.compare(
        "traffic",
        f"read pcapng {n} packets",
        "rate",
        n / _best(ours_ng, repeat),
        "packets/s",
        "bare dpkt parse loop",
        n / _best(bare_dpkt_ng, 1),
        note="container read by dpkt's pcapng block classes; target >= 200,000",
    )


def _long_csv(tmp: Path, quick: bool) -> Iterator[Figure]:
    n_intervals = 12_500 if quick else 125_000
    path = tmp / "bench.csv"
    scenario = load_scenario("campus")
    trace = generate(scenario, start=START, n_intervals=n_intervals, interval_s=1.0, seed=1)
    write_long_csv(trace, path)
    rows = trace.load_bps.size

    def ours() -> None:
        for _ in read_long_csv(path):
            pass

    def bare_csv() -> None:
        with path.open(newline="") as f:
            for _row in csv.reader(f):
                pass

    repeat = 2 if quick else 3
    yield Figure.compare(
        "traffic",
        f"read long CSV {rows} rows",
        "rate",
        rows / _best(ours, repeat),
        "rows/s",
        "csv.reader parse only",
        rows / _best(bare_csv, repeat),
        note="ours also converts, validates and bins into dense chunks",
    )
    write_s = _best(lambda: write_long_csv(trace, tmp / "out.csv"), 1 if quick else 2)
    yield Figure("traffic", f"write long CSV {rows} rows", "rate", rows / write_s, "rows/s")
