"""Admission control of MEC bandwidth requests against the hospital policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from solver_helpers import make_policy, slice_spec

from sliceai.policy import Policy, load_policy
from sliceai.solver import (
    AllocationDirection,
    DemandForecast,
    GrantRequest,
    GrantState,
    RequestType,
    SliceSolver,
    SolverError,
    admit,
    modify,
    release,
)

M = 1e6
HOSPITAL = Path(__file__).parents[2] / "policies" / "hospital.yaml"


@pytest.fixture
def hospital() -> Policy:
    return load_policy(HOSPITAL)


def _demand(policy: Policy) -> DemandForecast:
    # medians: haptics 1.5, video 30, consults 40, vitals 3, staff-embb 300 Mbit/s (DL = UL)
    median = np.array([1.5, 30, 40, 3, 300]) * M
    spread = np.array([0.8, 1.0, 1.3])
    return DemandForecast.from_quantiles(
        (0.1, 0.5, 0.9), median[:, None, None] * spread[None, None, :] * np.ones((1, 2, 1))
    )


def test_request_that_breaks_tele_surgery_is_refused() -> None:
    # 50 Mbit/s link: tele-surgery (priority 1, floor 2, risk 1e-3) and imaging (priority 40).
    # Surgery demand quantiles 3/4/5 at 0.1/0.5/0.9: beta = 1 / ln 5 = 0.621, so its 0.999
    # quantile is 5 + 0.621 * ln 100 = 7.86. A 45 Mbit/s imaging grant joins the floor tier
    # (2 + 45 = 47) and leaves 3 of the 5.86 surgery needs above its floor: short 2.86.
    policy = make_policy(
        [
            slice_spec("surgery", 85, 1, (2 * M, 2 * M), (20 * M, 20 * M), 0.001),
            slice_spec("imaging", 9, 40),
        ],
        [("theatre", 50 * M, ["surgery", "imaging"])],
    )
    demand = DemandForecast.from_quantiles(
        (0.1, 0.5, 0.9), np.array([[[3, 4, 5]] * 2, [[1, 2, 3]] * 2], dtype=float) * M
    )
    state = GrantState.from_demand(policy, demand)
    request = GrantRequest("r1", "pacs", "imaging", 45 * M, AllocationDirection.DL)
    decision = admit(policy, state, request)
    assert not decision.accepted
    assert decision.state is state
    (hurt,) = decision.hurt
    assert (hurt.slice, hurt.direction, hurt.link) == ("surgery", "dl", "theatre")
    assert hurt.short_bps == pytest.approx((5 + np.log(100) / np.log(5) - 5) * M)  # 7.86 - 2 - 3
    assert "surgery" in decision.reason
    # 40 Mbit/s leaves 8 for a 7.86 target: accepted.
    assert admit(policy, state, GrantRequest("r1", "pacs", "imaging", 40 * M)).accepted


def test_request_that_fits_is_accepted_and_counted_against_capacity(hospital: Policy) -> None:
    demand = _demand(hospital)
    state = GrantState.from_demand(hospital, demand)
    request = GrantRequest(
        "r2", "consult-app", "consults", 10 * M, request_type=RequestType.SESSION
    )
    decision = admit(hospital, state, request)
    assert decision.accepted
    assert decision.hurt == ()
    reserved = decision.state.reserved_bps(hospital)
    consults = hospital.slice_index("consults")
    np.testing.assert_array_equal(reserved[consults], [10 * M, 10 * M])
    assert reserved.sum() == 20 * M
    solver = SliceSolver(hospital)
    before = solver.solve(demand)
    after = solver.solve(demand, reserved_bps=reserved)
    # The grant is on top of the slice's protected rate; nobody else gains from it.
    assert after.rates_bps[consults, 0] == pytest.approx(before.rates_bps[consults, 0] + 10 * M)
    others = np.arange(len(hospital.slices)) != consults
    assert np.all(after.rates_bps[others] <= before.rates_bps[others] + 1e-6)
    assert after.link_load_bps()[0, 0] <= 500 * M
    # Protected DL targets on cell-backhaul: haptics 3.24 (its 0.999 quantile), video 60 (cap),
    # consults 69.17, vitals 5 (cap): 137.4 of 500, so 362.6 is free before the consults grant
    # and 352.6 after it. A 355 Mbit/s grant fits the first and not the second.
    big = GrantRequest("r3", "embb-app", "staff-embb", 355 * M, AllocationDirection.DL)
    assert admit(hospital, state, big).accepted
    assert not admit(hospital, decision.state, big).accepted


def test_release_and_modify(hospital: Policy) -> None:
    state = GrantState.from_demand(hospital, _demand(hospital))
    first = admit(hospital, state, GrantRequest("r1", "app", "vitals", 1 * M)).state
    assert [g.request_id for g in first.grants] == ["r1"]
    bigger = modify(hospital, first, GrantRequest("r1", "app", "vitals", 3 * M))
    assert bigger.accepted
    assert bigger.state.grant("r1").fixed_allocation_bps == 3 * M
    # vitals' maximum is 5 DL; floor 1 + grant 5 would exceed it: refused, old grant kept.
    too_big = modify(hospital, bigger.state, GrantRequest("r1", "app", "vitals", 5 * M))
    assert not too_big.accepted
    assert "maximum" in too_big.reason
    assert too_big.state.grant("r1").fixed_allocation_bps == 3 * M
    empty = release(bigger.state, "r1")
    assert empty.grants == ()
    assert empty.reserved_bps(hospital).sum() == 0
    with pytest.raises(SolverError, match="no standing grant"):
        release(empty, "r1")


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (GrantRequest("r", "app", "ghost", 1e6), "unknown slice"),
        (GrantRequest("r", "app", "vitals", -1.0), "positive"),
        (GrantRequest("r", "app", "vitals", float("nan")), "positive"),
        (GrantRequest("", "app", "vitals", 1e6), "non-empty"),
    ],
)
def test_malformed_requests_raise(hospital: Policy, request_: GrantRequest, message: str) -> None:
    state = GrantState.from_demand(hospital)
    with pytest.raises(SolverError, match=message):
        admit(hospital, state, request_)


def test_duplicate_id_and_foreign_app_raise(hospital: Policy) -> None:
    state = admit(
        hospital, GrantState.from_demand(hospital), GrantRequest("r", "app", "vitals", 1e6)
    ).state
    with pytest.raises(SolverError, match="already granted"):
        admit(hospital, state, GrantRequest("r", "app", "vitals", 1e6))
    with pytest.raises(SolverError, match="belongs to app"):
        modify(hospital, state, GrantRequest("r", "other-app", "vitals", 2e6))


def test_state_from_plan_matches_state_from_demand(hospital: Policy) -> None:
    demand = _demand(hospital)
    reserved = np.zeros((5, 2))
    reserved[[0, 2, 4]] = 1e5  # slices whose target stays under their cap
    plan = SliceSolver(hospital).solve(demand, reserved_bps=reserved)
    from_plan = GrantState.from_plan(hospital, plan)
    from_demand = GrantState.from_demand(hospital, demand)
    np.testing.assert_allclose(from_plan.base_target_bps, from_demand.base_target_bps)


def test_state_round_trips_through_json(hospital: Policy) -> None:
    import json

    state = GrantState.from_demand(hospital, _demand(hospital))
    state = admit(
        hospital, state, GrantRequest("r1", "app", "vitals", 1e6, AllocationDirection.UL)
    ).state
    again = GrantState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert again.grants == state.grants
    np.testing.assert_array_equal(again.base_target_bps, state.base_target_bps)
    with pytest.raises(SolverError, match="already granted"):
        admit(hospital, again, GrantRequest("r1", "app", "vitals", 1e6))
    with pytest.raises(SolverError, match="bad grant"):
        GrantState.from_dict({"policy": "hospital", "base_target_bps": [[1, 2]], "grants": [{}]})
