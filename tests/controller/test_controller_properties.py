"""Properties: any diff between two plans leaves the switch exactly as a fresh install would."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sliceai.controller.fake_table import FakeFlowTable
from sliceai.controller.flows import (
    EnforcementConfig,
    desired_tables,
    diff_tables,
    full_install,
    port_blocks,
)
from sliceai.policy import DIRECTIONS, Direction, loads_policy

POLICY = loads_policy(
    """
name: prop
slices:
  - {name: a, snssai: {sst: 2}, five_qi: 85, match: [{protocol: udp, ports: [5000-5007]}]}
  - {name: b, snssai: {sst: 3}, five_qi: 82, match: [{protocol: tcp, ports: [80, 443]}]}
  - {name: c, snssai: {sst: 1}, five_qi: 9, default: true}
topology:
  links: [{name: l, capacity: 1 Gbps, slices: [a, b, c]}]
"""
)
CONFIG = EnforcementConfig(core_ports=(1, 2))
KEYS = [(s.name, d) for s in POLICY.slices for d in DIRECTIONS]
rate = st.one_of(st.floats(0, 1e13), st.just(float("inf")))
Plan = dict[tuple[str, Direction], float]
plans = st.dictionaries(st.sampled_from(KEYS), rate)


@settings(max_examples=60, deadline=None)
@given(before=plans, after=plans)
def test_diff_reaches_the_same_state_as_a_fresh_install(before: Plan, after: Plan) -> None:
    switch = FakeFlowTable()
    old = desired_tables(POLICY, before, CONFIG)
    new = desired_tables(POLICY, after, CONFIG)
    switch.apply(full_install(old))
    switch.apply(diff_tables(old, new))  # raises if a meter goes while a flow still uses it
    fresh = FakeFlowTable()
    fresh.apply(full_install(new))
    assert switch.flows == fresh.flows
    assert switch.meters == fresh.meters


@given(first=st.integers(0, 65535), span=st.integers(0, 65535))
def test_port_blocks_cover_exactly_and_do_not_overlap(first: int, span: int) -> None:
    last = min(65535, first + span)
    blocks = port_blocks(first, last)
    sizes = [((~mask) & 0xFFFF) + 1 for _, mask in blocks]
    assert sum(sizes) == last - first + 1
    for (value, mask), size in zip(blocks, sizes, strict=True):
        assert value & ~mask & 0xFFFF == 0  # aligned
        assert first <= value
        assert value + size - 1 <= last
    assert len(blocks) <= 32
