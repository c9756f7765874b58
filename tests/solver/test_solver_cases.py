"""Small allocations whose optimum is worked out by hand in the comments."""

from __future__ import annotations

import math

import numpy as np
import pytest
from solver_helpers import make_policy, slice_spec

from sliceai.policy import Direction
from sliceai.solver import DemandForecast, Plan, SliceSolver, allocate

M = 1e6


def _point(*dl_ul: tuple[float, float]) -> DemandForecast:
    return DemandForecast.point(np.array(dl_ul, dtype=float))


def test_guaranteed_slice_first_then_best_effort_gets_the_rest() -> None:
    # One 100 Mbit/s link. a: tele-surgery (priority 1, floor 10, cap 50), certain demand 30.
    # b: best effort, certain demand 100. a's target = max(quantile 30, floor 10) = 30 and
    # serving more than 30 is worth nothing, so a = 30 and b = 100 - 30 = 70 (link full).
    policy = make_policy(
        [slice_spec("a", 85, 1, (10 * M, 10 * M), (50 * M, 50 * M), 0.001), slice_spec("b")],
        [("l", 100 * M, ["a", "b"])],
    )
    plan = allocate(policy, _point((30 * M, 5 * M), (100 * M, 1 * M)))
    assert plan.rate("a", Direction.DL) == pytest.approx(30 * M)
    assert plan.rate("b", Direction.DL) == pytest.approx(70 * M)
    # UL is independent: a wants 5 but its floor is 10; b wants 1.
    assert plan.rates_bps[:, 1] == pytest.approx([10 * M, 1 * M])
    assert plan.link_allocation("l")["b"] == pytest.approx((70 * M, 1 * M))
    ex = plan.explanations["b"].dl
    assert ex.binding == ("link:l",)
    assert ex.kept is None
    assert ex.expected_shortfall_bps == pytest.approx(30 * M)
    assert plan.explanations["a"].dl.kept is True


def test_shortage_degrades_in_priority_order() -> None:
    # 20 Mbit/s link. a (priority 1): floor 10, demand 30. c (priority 20): floor 5, demand 10.
    # Floors first: a 10, c 5 (15 of 20). Then guarantees by priority: a takes the last 5
    # (short of 30 by 15), c stays at its floor 5 (short of 10 by 5).
    policy = make_policy(
        [
            slice_spec("a", 85, 1, (10 * M, 0), None, 0.001),
            slice_spec("c", 2, 20, (5 * M, 0), None, 0.01),
        ],
        [("l", 20 * M, ["a", "c"])],
    )
    plan = allocate(policy, _point((30 * M, 0), (10 * M, 0)))
    assert plan.rates_bps[:, 0] == pytest.approx([15 * M, 5 * M])
    a, c = plan.explanations["a"].dl, plan.explanations["c"].dl
    assert a.kept is False
    assert a.short_bps == pytest.approx(15 * M)
    assert c.kept is False
    assert c.short_bps == pytest.approx(5 * M)
    assert "floor" in c.binding
    assert "link:l" in c.binding
    assert [e.slice for e in plan.unkept()] == ["a", "c"]


def test_floors_over_capacity_go_to_the_more_important_slice() -> None:
    # 10 Mbit/s link; floors a 8 (priority 1) and c 6 (priority 20) cannot both hold:
    # a keeps 8, c gets the remaining 2.
    policy = make_policy(
        [slice_spec("a", 85, 1, (8 * M, 0)), slice_spec("c", 2, 20, (6 * M, 0))],
        [("l", 10 * M, ["a", "c"])],
    )
    plan = allocate(policy, _point((8 * M, 0), (6 * M, 0)))
    assert plan.rates_bps[:, 0] == pytest.approx([8 * M, 2 * M])
    assert plan.link_load_bps()[0, 0] <= 10 * M * (1 + 1e-12)


def test_two_links_lp_prefers_the_two_end_slices() -> None:
    # l1 (10) carries a and b, l2 (10) carries b and c; each wants 10 for certain.
    # Weights fall with priority: w_a > w_b > w_c. Giving b any rate takes the same amount
    # from both a and c, which is worth w_a + w_c > w_b per bit/s: so a = 10, b = 0, c = 10.
    policy = make_policy(
        [slice_spec("a", 9, 60), slice_spec("b", 9, 70), slice_spec("c", 9, 80)],
        [("l1", 10 * M, ["a", "b"]), ("l2", 10 * M, ["b", "c"])],
    )
    plan = allocate(policy, _point((10 * M, 0), (10 * M, 0), (10 * M, 0)))
    assert plan.methods[0] == "highs"
    assert plan.rates_bps[:, 0] == pytest.approx([10 * M, 0, 10 * M], abs=1.0)
    assert plan.explanations["b"].dl.binding == ("link:l1", "link:l2")


# Quantiles 10/20/30 Mbit/s at levels 0.1/0.5/0.9. The tail above 30 is exponential with
# scale beta = (30 - 20) / ln(0.5 / 0.1) = 6.2133 Mbit/s.
LEVELS = (0.1, 0.5, 0.9)
BETA = 10 * M / math.log(5.0)


def _spread(n: int = 1) -> DemandForecast:
    return DemandForecast.from_quantiles(LEVELS, np.tile([10 * M, 20 * M, 30 * M], (n, 2, 1)))


def test_best_effort_desire_stops_where_the_price_of_capacity_exceeds_its_value() -> None:
    # Expected served traffic keeps rising above the top quantile, but reserved rate costs
    # RESERVE_COST = 0.05 per unit. Tail segments end where P(D > x) halves: on
    # [30, 30 + ln2 beta] the mean of P(D > x) is (0.1 - 0.05) / ln2 = 0.072 > 0.05, on the
    # next one 0.025 / ln2 = 0.036 < 0.05. A big link and no cap: x = 30 + ln2 beta = 34.31.
    policy = make_policy([slice_spec("a", 9, 1)], [("l", 1e9, ["a"])])
    plan = allocate(policy, _spread())
    assert plan.rates_bps[0, 0] == pytest.approx(30 * M + math.log(2) * BETA)
    assert plan.methods == ("unconstrained", "unconstrained")


def test_guaranteed_slice_gets_its_risk_quantile() -> None:
    # risk 0.001: quantile(0.999) = 30 + beta * ln(0.1 / 0.001) = 58.613 Mbit/s.
    policy = make_policy([slice_spec("a", 85, 1, risk=0.001)], [("l", 1e9, ["a"])])
    plan = allocate(policy, _spread())
    target = 30 * M + BETA * math.log(100.0)
    assert plan.rates_bps[0, 0] == pytest.approx(target)
    assert plan.explanations["a"].dl.target_bps == pytest.approx(target)
    # E[(D - x)+] above the top quantile: 0.1 * beta * exp(-(x - 30) / beta) = 1e-3 * beta.
    assert plan.explanations["a"].dl.expected_shortfall_bps == pytest.approx(1e-3 * BETA)


def test_churn_cost_is_a_dead_band_around_the_price_of_capacity() -> None:
    # Priority 1 best effort: tail slopes are 0.1 * (1/2, 1/4, 1/8) / ln 2 = 0.072, 0.036, 0.018,
    # and every unit of rate costs RESERVE_COST = 0.05.
    # Growing from 0 also pays the churn cost 0.02: only the first tail segment is worth it
    # (0.072 > 0.07): x = 30 + ln2 beta = 34.31.
    # Shrinking from 50 saves 0.05 but pays 0.02, so a segment is kept while its slope is
    # above 0.03: the first two (0.072, 0.036) stay, x = 30 + 2 ln2 beta = 38.61 — capacity
    # above that is given back, the rest of the way to 34.31 is not worth a meter change.
    policy = make_policy([slice_spec("a", 9, 1)], [("l", 1e9, ["a"])])
    solver = SliceSolver(policy)
    zero = Plan.guarantees_only(policy)
    assert solver.solve(_spread(), zero).rates_bps[0, 0] == pytest.approx(
        30 * M + math.log(2) * BETA
    )
    high = solver.solve(_point((50 * M, 50 * M)))
    assert high.rates_bps[0, 0] == pytest.approx(50 * M)
    again = solver.solve(_spread(), high)
    assert again.rates_bps[0, 0] == pytest.approx(30 * M + 2 * math.log(2) * BETA)
    assert again.explanations["a"].dl.change_bps == pytest.approx(
        30 * M + 2 * math.log(2) * BETA - 50 * M
    )


def test_cap_is_binding_and_explained() -> None:
    policy = make_policy([slice_spec("a", 9, 10, cap=(25 * M, 1 * M))], [("l", 1e9, ["a"])])
    plan = allocate(policy, _spread())
    assert plan.rates_bps[0] == pytest.approx([25 * M, 1 * M])
    assert plan.explanations["a"].dl.binding == ("cap",)


def test_guarantees_only_is_the_floors_within_capacity() -> None:
    policy = make_policy(
        [slice_spec("a", 85, 1, (8 * M, 1 * M)), slice_spec("c", 2, 20, (6 * M, 2 * M))],
        [("l", 10 * M, ["a", "c"])],
    )
    plan = Plan.guarantees_only(policy)
    # DL floors 14 > 10: both scaled by 10/14; UL floors fit.
    assert plan.rates_bps[:, 0] == pytest.approx([8 * M * 10 / 14, 6 * M * 10 / 14])
    assert plan.rates_bps[:, 1] == pytest.approx([1 * M, 2 * M])
    assert plan.methods == ("fail-safe", "fail-safe")


def test_plan_summary_is_json_ready() -> None:
    import json

    policy = make_policy([slice_spec("a", 9, 10, cap=(25 * M, 1 * M))], [("l", 1e9, ["a"])])
    summary = json.loads(json.dumps(allocate(policy, _spread()).as_dict()))
    assert summary["slices"]["a"] == {"dl": 25 * M, "ul": 1 * M, "kept": True}
