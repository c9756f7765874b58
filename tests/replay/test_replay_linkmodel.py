"""The fluid queue against hand-computed cases and its own per-interval definition."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sliceai.policy import load_policy, loads_policy
from sliceai.replay.linkmodel import (
    BIT_TOLERANCE,
    LinkModel,
    fluid_queue,
    fluid_queue_reference,
)

REPO = Path(__file__).resolve().parents[2]


def _col(values: list[float]) -> np.ndarray:
    return np.array(values, dtype=np.float64)[:, np.newaxis]


@pytest.mark.parametrize("queue", [fluid_queue, fluid_queue_reference])
def test_backlog_builds_then_drains(queue):
    # Service 10 bits per 1 s interval, buffer 5 bits, arrivals 12, 12, 3, 0.
    out = queue(_col([12, 12, 3, 0]), _col([10] * 4), _col([5] * 4), np.zeros(1), 1.0)
    np.testing.assert_allclose(out.served[:, 0], [10, 10, 7, 0])
    np.testing.assert_allclose(out.backlog[:, 0], [2, 4, 0, 0])
    np.testing.assert_allclose(out.dropped[:, 0], [0, 0, 0, 0])
    np.testing.assert_allclose(out.available[:, 0], [12, 14, 7, 0])
    np.testing.assert_allclose(out.delay_s[:, 0], [0.2, 0.4, 0, 0])  # backlog / (10 bit/s)


@pytest.mark.parametrize("queue", [fluid_queue, fluid_queue_reference])
def test_overflow_is_dropped(queue):
    out = queue(_col([20, 0]), _col([10, 10]), _col([5, 5]), np.zeros(1), 1.0)
    np.testing.assert_allclose(out.served[:, 0], [10, 5])
    np.testing.assert_allclose(out.backlog[:, 0], [5, 0])
    np.testing.assert_allclose(out.dropped[:, 0], [5, 0])


@pytest.mark.parametrize("queue", [fluid_queue, fluid_queue_reference])
def test_rate_cut_shrinks_buffer_and_drops_backlog(queue):
    # Interval 2 s: service 10 then 2 bits per interval, buffer 8 then 1 bit.
    out = queue(_col([16, 0]), _col([10, 2]), _col([8, 1]), np.zeros(1), 2.0)
    np.testing.assert_allclose(out.served[:, 0], [10, 2])
    np.testing.assert_allclose(out.backlog[:, 0], [6, 1])
    np.testing.assert_allclose(out.dropped[:, 0], [0, 3])
    # delay = backlog / rate; rate = 10 bits / 2 s = 5 bit/s, then 1 bit/s.
    np.testing.assert_allclose(out.delay_s[:, 0], [6 / 5, 1 / 1])


def test_initial_backlog_is_served_first():
    out = fluid_queue(_col([0, 0]), _col([4, 4]), _col([10, 10]), np.array([6.0]), 1.0)
    np.testing.assert_allclose(out.served[:, 0], [4, 2])
    np.testing.assert_allclose(out.backlog[:, 0], [2, 0])


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 300),
    st.floats(0.1, 3.0),
    st.floats(0.0, 0.5),
    st.sampled_from([0.25, 1.0, 60.0]),
)
def test_scan_matches_per_interval_loop(seed, n, load_factor, buffer_frac, dt):
    rng = np.random.default_rng(seed)
    service = rng.uniform(0, 1e3, (n, 4)) * (rng.random((n, 4)) > 0.1)  # some meters at 0
    arrivals = load_factor * rng.exponential(1e3, (n, 4)) * (rng.random((n, 4)) > 0.2)
    buffer = buffer_frac * service
    start = rng.uniform(0, 1.0, 4) * buffer[0]
    fast = fluid_queue(arrivals, service, buffer, start, dt)
    slow = fluid_queue_reference(arrivals, service, buffer, start, dt)
    for name in ("served", "dropped", "backlog", "available", "delay_s"):
        np.testing.assert_allclose(getattr(fast, name), getattr(slow, name), atol=1e-6)
    # Conservation: what was there is served, dropped or still queued (up to the
    # BIT_TOLERANCE rounding of tiny fluid volumes).
    np.testing.assert_allclose(
        fast.available, fast.served + fast.dropped + fast.backlog, rtol=1e-9, atol=BIT_TOLERANCE
    )
    assert np.all(fast.backlog <= buffer + 1e-9)
    assert np.all(fast.served <= service + 1e-9)


def test_link_model_carries_backlog_across_chunks():
    policy = load_policy(REPO / "policies" / "campus.yaml")
    rng = np.random.default_rng(3)
    demand = rng.uniform(0, 2e6, (50, len(policy.slices), 2))
    rates = np.full_like(demand, 1e6)
    whole = LinkModel(policy, 1.0)
    q_all, _ = whole.step(demand, rates)
    parts = LinkModel(policy, 1.0)
    q1, _ = parts.step(demand[:17], rates[:17])
    q2, _ = parts.step(demand[17:], rates[17:])
    np.testing.assert_allclose(np.concatenate([q1.backlog, q2.backlog]), q_all.backlog)
    np.testing.assert_allclose(np.concatenate([q1.dropped, q2.dropped]), q_all.dropped)


POLICY_2_LINKS = """
name: two-links
slices:
  - name: a
    snssai: {sst: 1}
    five_qi: 9
    default: true
  - name: b
    snssai: {sst: 2}
    five_qi: 9
    match: [{protocol: udp, ports: [5000]}]
topology:
  links:
    - {name: l1, capacity: 10 Mbps, slices: [a, b]}
    - {name: l2, capacity: 4 Mbps, slices: [b]}
"""


def test_over_committed_links_scale_their_slices():
    policy = loads_policy(POLICY_2_LINKS)
    model = LinkModel(policy, 1.0)
    rates = np.array([[[8e6, 1e6], [8e6, 1e6]]])  # (1, 2 slices, 2 directions)
    eff = model.effective_rates(rates)
    # DL: l1 carries 16 Mbit/s for 10 -> factor 0.625; l2 carries b's 8 for 4 -> 0.5.
    np.testing.assert_allclose(eff[0, :, 0], [8e6 * 0.625, 8e6 * 0.5])
    # UL fits everywhere: unchanged.
    np.testing.assert_allclose(eff[0, :, 1], [1e6, 1e6])
