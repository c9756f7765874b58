"""RRMPolicyRatio from a plan: the mapping on a worked example and its invariants (hypothesis)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sliceai.policy import load_policy
from sliceai.solver.rrm import rrm_policy_ratios, rrm_ratios

ROOT = Path(__file__).resolve().parents[2]


def test_worked_example_on_the_hospital_cell() -> None:
    policy = load_policy(ROOT / "policies" / "hospital.yaml")  # cell-backhaul: 500 Mbps
    rates = np.zeros((len(policy.slices), 2))
    for name, dl in {
        "surgery-haptics": 3e6,
        "surgery-video": 40e6,
        "consults": 52e6,
        "vitals": 1e6,
        "staff-embb": 200e6,
    }.items():
        rates[policy.slice_index(name), 0] = dl
    out = {o["id"]: o["attributes"] for o in rrm_policy_ratios(policy, rates, plmn=("208", "93"))}
    video = out["surgery-video"]
    # guaranteed 35 Mbps = 7 %, planned 40 Mbps = 8 %, maximum 60 Mbps = 12 % of 500 Mbps
    assert (video["rRMPolicyDedicatedRatio"], video["rRMPolicyMinRatio"]) == (7, 8)
    assert video["rRMPolicyMaxRatio"] == 12
    assert video["resourceType"] == "PRB"
    assert video["rRMPolicyMemberList"] == [
        {"plmnId": {"mcc": "208", "mnc": "93"}, "sNSSAI": {"sst": 2, "sd": "0000A2"}}
    ]
    haptics = out["surgery-haptics"]  # 2 / 3 / 4 Mbps of 500: each rounds up to 1 %
    assert (
        haptics["rRMPolicyDedicatedRatio"],
        haptics["rRMPolicyMinRatio"],
        haptics["rRMPolicyMaxRatio"],
    ) == (1, 1, 1)
    embb = out["staff-embb"]  # no guarantee, 200 Mbps planned, 400 Mbps cap
    assert (embb["rRMPolicyDedicatedRatio"], embb["rRMPolicyMinRatio"]) == (0, 40)
    assert embb["rRMPolicyMaxRatio"] == 80


def test_a_slice_without_maximum_may_take_the_whole_cell_and_ul_is_its_own() -> None:
    policy = load_policy(ROOT / "policies" / "hospital.yaml")
    rates = np.full((len(policy.slices), 2), 1e6)
    out = rrm_policy_ratios(policy, rates, resource="PRB_UL", capacity_bps=100e6)
    vitals = next(o["attributes"] for o in out if o["id"] == "vitals")
    assert vitals["resourceType"] == "PRB_UL"
    assert vitals["rRMPolicyDedicatedRatio"] == 5  # 5 Mbps UL floor of 100 Mbps
    assert vitals["rRMPolicyMaxRatio"] == 20
    assert rrm_ratios([0], [0], [math.inf], 1e6, [9]) == [(0, 0, 100)]
    with pytest.raises(ValueError, match="resource type 'RRC'"):
        rrm_policy_ratios(policy, rates, resource="RRC")
    with pytest.raises(ValueError, match="capacity"):
        rrm_ratios([0], [0], [1], 0.0, [1])


def test_the_least_important_slices_give_up_rounding_first() -> None:
    # three slices at 33.5 % round up to 34 % (102 %): the two of priority 90 give their
    # rounding back, the most important keeps it
    out = rrm_ratios([0] * 3, [33.5e6] * 3, [math.inf] * 3, 100e6, [90, 1, 90])
    assert [m for _, m, _ in out] == [33, 34, 33]
    # planned 60 % and 50 %, floors 10 % and 20 %: the less important goes down to 40 %
    out = rrm_ratios([10e6, 20e6], [60e6, 50e6], [math.inf] * 2, 100e6, [5, 50])
    assert out == [(10, 60, 100), (20, 40, 100)]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 1, allow_nan=False),  # guarantee, share of capacity
            st.floats(0, 1.5, allow_nan=False),  # planned, share of capacity (any)
            st.one_of(st.just(math.inf), st.floats(0, 2, allow_nan=False)),  # maximum
            st.integers(1, 127),
        ),
        min_size=1,
        max_size=40,
    ),
    st.floats(1e3, 1e12),
)
def test_ratio_invariants(slices: list[tuple[float, float, float, int]], capacity: float) -> None:
    g = np.array([s[0] for s in slices])
    g = g / max(1.0, g.sum())  # the policy loader keeps guarantees within capacity
    m = np.array([max(s[2], gi) for s, gi in zip(slices, g, strict=True)])
    p = np.array([s[1] for s in slices])
    out = rrm_ratios(g * capacity, p * capacity, m * capacity, capacity, [s[3] for s in slices])
    assert len(out) == len(slices)
    for ded, mn, mx in out:
        assert all(isinstance(x, int) for x in (ded, mn, mx))
        assert 0 <= ded <= mn <= mx <= 100
    assert sum(mn for _, mn, _ in out) <= 100
    # rounding is up and only trimmed where the sum needs it: with room, no planned rate is cut
    raw = [
        max(math.ceil(100 * gi - 1e-9), math.ceil(100 * pi - 1e-9))
        for gi, pi in zip(g, p, strict=True)
    ]
    if sum(min(100, r) for r in raw) <= 100:
        assert [mn for _, mn, _ in out] == [min(100, r) for r in raw]
        assert all(
            ded >= math.ceil(100 * gi - 1e-9) for (ded, _, _), gi in zip(out, g, strict=True)
        )
