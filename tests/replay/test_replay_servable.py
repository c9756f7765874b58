"""Servable intervals: what no allocation within the policy could serve, counted apart."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sliceai.policy import loads_policy
from sliceai.replay import replay
from sliceai.replay.allocators import StaticAllocator
from sliceai.replay.metrics import servable_limit_bps
from sliceai.replay.report import comparison_table, report_json
from sliceai.traffic import Trace

# a: maximum 60, floor 10 (DL), on both links; b: floor 30 (DL), no maximum; c: maximum 1.
POLICY = loads_policy(
    """
name: servable
slices:
  - name: a
    snssai: {sst: 1, sd: "000001"}
    five_qi: 9
    latency_budget: 50 ms
    guaranteed: {dl: 10 Mbps}
    maximum: {dl: 60 Mbps, ul: 60 Mbps}
    match: [{protocol: udp, ports: [1001]}]
  - name: b
    snssai: {sst: 1, sd: "000002"}
    five_qi: 9
    latency_budget: 100 ms
    guaranteed: {dl: 30 Mbps}
    match: [{protocol: udp, ports: [1002]}]
  - name: c
    snssai: {sst: 1, sd: "000003"}
    five_qi: 9
    maximum: {dl: 1 Mbps, ul: 1 Mbps}
    match: [{protocol: udp, ports: [1003]}]
topology:
  links:
    - {name: l1, capacity: 100 Mbps, slices: [a, b, c]}
    - {name: l2, capacity: 50 Mbps, slices: [a]}
"""
)


class Fixed(StaticAllocator):
    name = "fixed"

    def allocate_chunk(self, load: np.ndarray) -> np.ndarray:
        rates = np.zeros_like(load)
        rates[:, :, :] = np.array([[50e6, 50e6], [49e6, 0.0], [1e6, 1e6]])
        return rates


def test_servable_limit_is_the_maximum_and_each_link_less_the_other_floors():
    limit = servable_limit_bps(POLICY)
    # a: min(60, l1 100 - b's 30, l2 50) DL; min(60, 100, 50) UL. b: 100 - a's 10 DL, 100 UL.
    np.testing.assert_allclose(limit, [[50e6, 50e6], [90e6, 100e6], [1e6, 1e6]])


def test_violations_in_servable_intervals_are_counted_apart():
    load = np.zeros((6, 3, 2))
    load[:, 0, 0] = [40e6, 55e6, 50e6, 10e6, 10e6, 10e6]  # a: 55 > 50 at t1 (50 fits)
    load[4, 0, 1] = 51e6  # a: UL above 50 at t4
    load[:, 1, 0] = [95e6, 20e6, 20e6, 20e6, 20e6, 20e6]  # b: 95 > 90 at t0
    load[:, 2, :] = 2e6  # c: always above its maximum
    result = replay(Trace(0.0, 1.0, POLICY.slice_names, load), POLICY, [Fixed()])
    m = result.allocators["fixed"].metrics["slices"]
    # a at 50 Mbit/s, buffer 2 x 50 ms x 50 Mbit/s = 5 Mbit: t1 leaves 5 Mbit queued (100 ms
    # late), which t2 (servable: 50 fits) carries on: late again; t4 serves 50 of UL 51.
    assert m["a"]["violation_rate"] == pytest.approx(3 / 6)
    assert m["a"]["unservable_intervals"] == 2
    assert m["a"]["violation_rate_servable"] == pytest.approx(1 / 4)
    # b loses at t0 only (unservable); c violates always and is never servable.
    assert (m["b"]["violation_rate"], m["b"]["unservable_intervals"]) == (pytest.approx(1 / 6), 1)
    assert m["b"]["violation_rate_servable"] == 0.0
    assert (m["c"]["unservable_intervals"], m["c"]["violation_rate_servable"]) == (6, None)
    data = json.loads(json.dumps(report_json(result)))
    assert data["allocators"]["fixed"]["slices"]["c"]["violation_rate_servable"] is None
    text = comparison_table(result, per_slice=True)
    assert "servable viol %" in text
    assert "for every allocator): a 2, b 1, c 6" in text
