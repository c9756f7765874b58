"""Properties of plans over random policies and demands (hypothesis)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from sliceai.policy import Policy
from sliceai.solver import DemandForecast, Plan, SliceSolver, allocate, lp
from sliceai.solver.formulation import Segments
from sliceai.solver.highs_model import ReducedLP
from sliceai.solver.synthetic import demand_sequence, random_demand, random_policy

SETTINGS = settings(max_examples=40, deadline=None)


@dataclass
class Scenario:
    policy: Policy
    demand: DemandForecast
    seed: int


def _scenario(
    seed: int,
    n_slices: int,
    n_links: int,
    per: int,
    demand_factor: float,
    capacity_scale: float,
    n_levels: int,
) -> Scenario:
    rng = np.random.default_rng(seed)
    policy, median = random_policy(
        rng, n_slices, n_links, links_per_slice=per, capacity_scale=capacity_scale
    )
    demand = random_demand(np.random.default_rng(seed + 1), median * demand_factor, n_levels)
    return Scenario(policy, demand, seed)


@st.composite
def scenarios(draw: st.DrawFn, max_links: int = 4) -> Scenario:
    return _scenario(
        seed=draw(st.integers(0, 2**31)),
        n_slices=draw(st.integers(1, 10)),
        n_links=draw(st.integers(1, max_links)),
        per=draw(st.integers(1, 3)),
        demand_factor=draw(st.floats(0.1, 4.0)),
        capacity_scale=draw(st.floats(0.2, 1.5)),
        n_levels=draw(st.integers(1, 8)),
    )


def _tol(plan: Plan) -> float:
    return 1e-7 * float(plan.capacity_bps.max())


@SETTINGS
@given(scenarios())
def test_capacity_and_caps_always_hold(sc: Scenario) -> None:
    plan = allocate(sc.policy, sc.demand)
    assert np.all(plan.link_load_bps() <= plan.capacity_bps[:, None])
    assert np.all(plan.rates_bps <= plan.cap_bps * (1 + 1e-12))
    assert np.all(plan.rates_bps >= 0)
    assert np.all(np.isfinite(plan.rates_bps))


@SETTINGS
@given(scenarios())
def test_floors_hold_whenever_they_fit(sc: Scenario) -> None:
    plan = allocate(sc.policy, sc.demand)
    floors = plan.floor_bps
    fits = np.all(plan.incidence.astype(float) @ floors <= plan.capacity_bps[:, None])
    if fits:
        assert np.all(plan.rates_bps >= floors - _tol(plan))


@SETTINGS
@given(scenarios())
def test_more_important_slice_never_gives_way(sc: Scenario) -> None:
    # a more important than b, and b crosses every link a crosses: while a misses its
    # target, b gets nothing above its floor; while a misses its floor, b gets nothing.
    plan = allocate(sc.policy, sc.demand)
    prio = np.array([s.priority_level for s in sc.policy.slices])
    inc = plan.incidence
    tol = _tol(plan)
    for a in range(len(prio)):
        for b in range(len(prio)):
            if prio[a] >= prio[b] or np.any(inc[:, a] & ~inc[:, b]):
                continue
            for d in range(2):
                if plan.rates_bps[a, d] < plan.target_bps[a, d] - tol:
                    assert plan.rates_bps[b, d] <= plan.floor_bps[b, d] + tol
                if plan.rates_bps[a, d] < plan.floor_bps[a, d] - tol:
                    assert plan.rates_bps[b, d] <= tol


@SETTINGS
@given(
    seed=st.integers(0, 2**31),
    n_slices=st.integers(1, 10),
    scale=st.floats(0.2, 1.2),
    more=st.floats(1.0, 3.0),
    demand_factor=st.floats(0.5, 3.0),
)
def test_more_capacity_never_lowers_guarantee_coverage(
    seed: int, n_slices: int, scale: float, more: float, demand_factor: float
) -> None:
    # One shared link: the plan is a greedy fill in slope order, so extra capacity only
    # extends the fill. (With several links, extra capacity on one can rightly let a more
    # important slice take more on another, lowering a less important slice there.)
    small = _scenario(seed, n_slices, 1, 1, demand_factor, scale, 6)
    big = _scenario(seed, n_slices, 1, 1, demand_factor, scale * more, 6)
    p_small = allocate(small.policy, small.demand)
    p_big = allocate(big.policy, big.demand)
    np.testing.assert_array_equal(p_small.target_bps, p_big.target_bps)
    target = p_small.target_bps
    has = target > 0
    cov_small = np.minimum(p_small.rates_bps, target)[has] / target[has]
    cov_big = np.minimum(p_big.rates_bps, target)[has] / target[has]
    assert np.all(cov_big >= cov_small - 1e-9)


@SETTINGS
@given(scenarios())
def test_same_input_same_plan(sc: Scenario) -> None:
    first = allocate(sc.policy, sc.demand)
    second = SliceSolver(sc.policy).solve(sc.demand)
    np.testing.assert_array_equal(first.rates_bps, second.rates_bps)
    again = allocate(sc.policy, sc.demand, previous=first)
    np.testing.assert_array_equal(again.rates_bps, allocate(sc.policy, sc.demand, first).rates_bps)


def _objective(seg: Segments, rates: np.ndarray) -> float:
    """sum_s f_s(x_s) for normalised rates ``(n_slices,)``."""
    start = np.concatenate(
        [np.zeros((seg.lengths.shape[0], 1)), np.cumsum(seg.lengths, 1)[:, :-1]], 1
    )
    fill = np.clip(rates[:, None] - start, 0.0, seg.lengths)
    return float((seg.slopes * fill).sum())


def _full_lp(seg: Segments, policy: Policy, capacity: np.ndarray) -> float:
    used = seg.lengths.ravel() > 0
    k = seg.lengths.shape[1]
    a = sp.csr_matrix(np.repeat(policy.incidence.astype(float), k, axis=1)[:, used])
    res = linprog(
        -seg.slopes.ravel()[used],
        A_ub=a,
        b_ub=capacity,
        bounds=np.stack([np.zeros(used.sum()), seg.lengths.ravel()[used]], 1),
        method="highs",
    )
    assert res.status == 0
    return float(-res.fun)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n_slices=st.integers(4, 40),
    n_links=st.integers(2, 8),
    demand_factor=st.floats(0.5, 3.0),
)
def test_screened_lp_matches_the_full_lp(
    seed: int, n_slices: int, n_links: int, demand_factor: float
) -> None:
    sc = _scenario(seed, n_slices, n_links, 3, demand_factor, 1.0, 8)
    solver = SliceSolver(sc.policy)
    previous = None
    for _ in range(2):  # second round: warm prices and a churn cost
        segs, *_ = solver.segments(sc.demand, previous)
        plan = solver.solve(sc.demand, previous)
        for d in range(2):
            seg = segs[d]
            mine = _objective(seg, plan.rates_bps[:, d] / seg.scale)
            best = _full_lp(seg, sc.policy, plan.capacity_bps / seg.scale)
            assert mine >= best - 1e-7 * max(1.0, abs(best))
        previous = plan


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31), n_slices=st.integers(4, 40), n_links=st.integers(2, 8))
def test_directions_on_two_threads_plan_as_one_thread_does(
    seed: int, n_slices: int, n_links: int
) -> None:
    sc = _scenario(seed, n_slices, n_links, 3, 2.0, 1.0, 8)
    plans = []
    for parallel in (True, False):
        solver = SliceSolver(sc.policy, parallel=parallel)
        first = solver.solve(sc.demand)
        plans.append((first, solver.solve(sc.demand, first)))
    for a, b in zip(plans[0], plans[1], strict=True):
        np.testing.assert_array_equal(a.rates_bps, b.rates_bps)
        assert a.methods == b.methods


@pytest.mark.parametrize("seed", [3, 11, 29])
def test_rounds_without_proof_fall_back_to_the_full_lp(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No free segments and a single round: the restricted LP cannot be proven, so each
    # direction ends in the full LP (every used segment of every constrained slice).
    monkeypatch.setattr(lp, "WINDOW", 0)
    monkeypatch.setattr(lp, "MAX_ROUNDS", 1)
    sc = _scenario(seed, 40, 6, 3, 2.5, 1.0, 8)
    solver = SliceSolver(sc.policy, parallel=False)
    first = solver.solve(sc.demand)
    segs, *_ = solver.segments(sc.demand, first)
    capacity = first.capacity_bps / segs[0].scale
    problems = [
        lp.DirectionProblem(
            segs[d], first.incidence, capacity, None, first.rates_bps[:, d] / segs[d].scale
        )
        for d in range(2)
    ]
    for seg, result in zip(segs, lp.solve_directions(problems), strict=True):
        assert result.method == "highs"
        active = first.incidence.astype(float) @ seg.desire > capacity * (1 + lp.TOLERANCE)
        constrained = first.incidence[active].any(axis=0)
        assert result.lp_columns == int((seg.lengths[constrained] > 0).sum())
        best = _full_lp(seg, sc.policy, capacity)
        assert _objective(seg, result.rates) == pytest.approx(best, rel=1e-7, abs=1e-9)


def test_one_solver_shared_by_threads_plans_optimally() -> None:
    # The solver's HiGHS instances are reused: concurrent calls must queue, not interleave.
    sc = _scenario(5, 160, 12, 3, 2.0, 1.0, 8)
    shared = SliceSolver(sc.policy)
    segs, *_ = shared.segments(sc.demand)
    capacity = shared.arrays.capacity_bps
    best = [_full_lp(seg, sc.policy, capacity / seg.scale) for seg in segs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        plans = list(pool.map(lambda _: shared.solve(sc.demand), range(12)))
    for plan in plans:
        for d, seg in enumerate(segs):
            mine = _objective(seg, plan.rates_bps[:, d] / seg.scale)
            assert mine == pytest.approx(best[d], rel=1e-7)


@pytest.mark.parametrize("seed", [2, 17])
def test_models_kept_warm_across_intervals_stay_optimal(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Successive intervals update last interval's reduced LP in place (same slices and
    # links): every plan must still be the full LP's optimum.
    updates = []
    real_update = ReducedLP.update

    def counted(self: ReducedLP, *args: np.ndarray) -> None:
        updates.append(self)
        real_update(self, *args)

    monkeypatch.setattr(ReducedLP, "update", counted)
    rng = np.random.default_rng(seed)
    policy, median = random_policy(rng, 48, 8, links_per_slice=3)
    solver = SliceSolver(policy, parallel=False)
    previous = None
    for demand in demand_sequence(rng, median * 1.3, 8):
        segs, *_ = solver.segments(demand, previous)
        plan = solver.solve(demand, previous)
        for d, seg in enumerate(segs):
            mine = _objective(seg, plan.rates_bps[:, d] / seg.scale)
            best = _full_lp(seg, policy, plan.capacity_bps / seg.scale)
            assert mine == pytest.approx(best, rel=1e-7, abs=1e-9)
        previous = plan
    assert len(updates) >= 8  # both directions, from the third interval on
