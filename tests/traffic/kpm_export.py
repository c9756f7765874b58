"""A realistic per-UE KPM export, generated: what an E2SM-KPM collector (or the ColO-RAN
dataset) writes, one CSV per UE, downlink only.

Columns as ColO-RAN names them: ``Timestamp`` (epoch ms, reports every 250 ms with a few
ms of jitter), ``num_ues``, ``IMSI``, ``RNTI``, ``slice_id`` (0 eMBB, 1 mMTC, 2 URLLC),
``slice_prb``, ``dl_mcs``, ``tx_brate downlink [Mbps]``, ``tx_pkts downlink``,
``dl_buffer [bytes]``. Traffic: eMBB video with ON/OFF bursts of 5-40 Mbit/s, mMTC
sensors sending a small report every couple of seconds, URLLC control at ~1.5 Mbit/s with
jitter; one eMBB UE attaches after a minute and one detaches a minute before the end.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

START_MS = 1_767_571_200_000  # 2026-01-05 00:00 UTC
PERIOD_MS = 250
HEADER = (
    "Timestamp,num_ues,IMSI,RNTI,slice_id,slice_prb,dl_mcs,"
    "tx_brate downlink [Mbps],tx_pkts downlink,dl_buffer [bytes]"
)
# (slice id, first report, last report) per UE, in reports of 250 ms
UES = [(0, 0, None), (0, 0, None), (0, 240, None), (0, 0, 720), (1, 0, None), (1, 0, None)]
UES += [(2, 0, None), (2, 0, None)]


def _rates(slice_id: int, n: int, rng: np.random.Generator) -> np.ndarray:
    if slice_id == 0:  # video: ON/OFF segments of a few seconds, bursty while ON
        on = np.repeat(rng.random(n // 8 + 1) < 0.6, 8)[:n]
        level = np.repeat(rng.uniform(5, 40, n // 20 + 1), 20)[:n]
        return np.where(on, level * rng.lognormal(0, 0.3, n), rng.uniform(0, 0.2, n))
    if slice_id == 1:  # sensors: a small report every ~2 s
        return np.where(rng.random(n) < 0.12, rng.uniform(0.05, 0.3, n), 0.0)
    return np.clip(rng.normal(1.5, 0.25, n), 0.2, None)  # control loop


def write_kpm_export(directory: Path, *, minutes: float = 4.0, seed: int = 0) -> list[Path]:
    """Write one CSV per UE into ``directory``; returns their paths."""
    rng = np.random.default_rng(seed)
    n = round(minutes * 60_000 / PERIOD_MS)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, (slice_id, first, last) in enumerate(UES):
        stop = n if last is None else last
        steps = np.arange(first, stop)
        times = START_MS + steps * PERIOD_MS + rng.integers(-3, 4, len(steps))
        rate = _rates(slice_id, len(steps), rng)
        imsi = f"00101{k + 1:010d}"
        lines = [HEADER]
        for t, r in zip(times.tolist(), rate.tolist(), strict=True):
            pkts = int(r * 1e6 * 0.25 / 8 / 1200)
            lines.append(
                f"{t},{len(UES)},{imsi},{17921 + k},{slice_id},{[13, 6, 6][slice_id]},"
                f"{int(rng.integers(9, 28))},{r:.4f},{pkts},{int(rng.integers(0, 40000))}"
            )
        path = directory / f"ue_{k + 1}_{imsi}.csv"
        path.write_text("\n".join(lines) + "\n")
        paths.append(path)
    return paths


POLICY = """\
name: ran-slices
slices:
  - name: embb
    snssai: {sst: 1, sd: "000001"}
    five_qi: 9
    maximum: {dl: 200 Mbps, ul: 50 Mbps}
    risk: 0.1
    default: true
  - name: mmtc
    snssai: {sst: 3, sd: "000002"}
    five_qi: 79
    guaranteed: {dl: 1 Mbps, ul: 1 Mbps}
    maximum: {dl: 5 Mbps, ul: 5 Mbps}
    risk: 0.01
    match: [{protocol: udp, ports: [5683]}]
  - name: urllc
    snssai: {sst: 2, sd: "000003"}
    five_qi: 82
    guaranteed: {dl: 4 Mbps, ul: 4 Mbps}
    maximum: {dl: 10 Mbps, ul: 10 Mbps}
    risk: 0.001
    match: [{protocol: udp, ports: [4000]}]
topology:
  links:
    - name: cell
      capacity: 250 Mbps
      slices: [embb, mmtc, urllc]
"""
