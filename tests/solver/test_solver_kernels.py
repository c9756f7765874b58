"""The compiled kernels of sliceai.solver.kernels against plain-Python readings of their docs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sliceai.solver import kernels
from sliceai.solver.formulation import CHURN_COST, RESERVE_COST


def _reference_segments(
    points: np.ndarray, demand_slopes: np.ndarray, i: int, extra: dict[str, float], cap: float
) -> tuple[np.ndarray, np.ndarray]:
    """One slice's segments the slow way: sort the breakpoints, evaluate each term at the
    segment's midpoint."""
    raw = [0.0, *points[i], extra["floor"], extra["target"], extra["previous"]]
    top = min(max(raw), cap)
    bps = sorted(min(v, top) for v in raw)
    lengths, slopes = [], []
    for a, b in itertools.pairwise(bps):
        mid = 0.5 * (a + b)
        below = [j for j, p in enumerate(points[i]) if min(p, top) <= a]
        s = extra["weight"] * (demand_slopes[i, max(below)] if below else 1.0)
        s += extra["floor_bonus"] * (mid < extra["floor"])
        s += extra["guarantee_bonus"] * (mid < extra["target"])
        s += CHURN_COST if mid < extra["previous"] else -CHURN_COST
        s -= RESERVE_COST
        slopes.append(s)
        lengths.append(b - a if s > 0 else 0.0)
    return np.array(lengths), np.array(slopes)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), capped=st.booleans())
def test_merged_segments_match_the_slow_reading(seed: int, capped: bool) -> None:
    rng = np.random.default_rng(seed)
    n, p = 5, 7
    # Distinct points so that "at or below" never depends on the order of ties.
    points = np.sort(rng.uniform(1.0, 10.0, size=(n, p)), axis=1)
    demand_slopes = np.sort(rng.uniform(0.0, 1.0, size=(n, p)), axis=1)[:, ::-1].copy()
    demand_slopes[:, -1] = 0.0
    weight = rng.uniform(0.5, 1.0, n)
    floor = rng.uniform(0.0, 4.0, n)
    target = rng.uniform(0.0, 9.0, n)
    previous = rng.uniform(0.0, 12.0, n)
    f_bonus = rng.uniform(5.0, 9.0, n)
    g_bonus = rng.uniform(2.0, 4.0, n)
    cap = rng.uniform(3.0, 12.0, n) if capped else np.full(n, np.inf)
    lengths, slopes = kernels.merge_segments(
        points, demand_slopes, weight, floor, f_bonus, target, g_bonus, cap, previous,
        True, 1.0, CHURN_COST, RESERVE_COST,
    )  # fmt: skip
    for i in range(n):
        extra = {
            "floor": floor[i],
            "target": target[i],
            "previous": previous[i],
            "weight": weight[i],
            "floor_bonus": f_bonus[i],
            "guarantee_bonus": g_bonus[i],
        }
        ref_len, ref_slope = _reference_segments(points, demand_slopes, i, extra, cap[i])
        used = ref_len > 0
        np.testing.assert_allclose(lengths[i], ref_len, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(slopes[i][used], ref_slope[used], rtol=1e-12)
        # Concave: the used segments' slopes never rise, and they never pass the cap.
        assert np.all(np.diff(slopes[i][used]) <= 1e-12)
        assert lengths[i].sum() <= cap[i] + 1e-9


def _csr(incidence: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    slices, rows = np.nonzero(incidence.T)
    count = np.bincount(slices, minlength=incidence.shape[1])
    start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
    return start, count, rows.astype(np.int32)


@pytest.mark.parametrize("seed", range(5))
def test_crash_basis_pairs_each_priced_link_with_one_of_its_slices(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, m = 30, 8
    incidence = rng.random((m, n)) < 0.3
    col_slice = np.repeat(np.arange(n), 3)
    reduced = rng.normal(size=col_slice.size)
    prices = np.where(rng.random(m) < 0.7, rng.uniform(0.1, 2.0, m), 0.0)
    basic, row_basic = kernels.crash_basis(reduced, prices, col_slice, *_csr(incidence), 50)
    # As many basic columns as links that gave up their slack: the basis stays square.
    assert basic.sum() == (~row_basic).sum()
    assert np.all(row_basic[prices == 0])  # unpriced links keep their slacks
    chosen = np.flatnonzero(basic)
    for row in np.flatnonzero(~row_basic):
        crossing = [c for c in chosen if incidence[row, col_slice[c]]]
        assert crossing  # each link's column is one of its own slices'
    for row in np.flatnonzero(row_basic & (prices > 0)):
        # A priced link keeps its slack only when all its candidate columns went elsewhere.
        candidates = np.flatnonzero(incidence[row, col_slice])
        assert basic[candidates].all()


def test_widened_windows_contain_the_old_ones_and_free_failing_slices() -> None:
    incidence = np.array([[1, 1, 0, 0], [0, 0, 1, 1]], dtype=bool)  # links x slices
    lo = np.array([3, 3, 3, 3])
    hi = np.array([5, 5, 5, 5])
    cut = np.array([4, 4, 9, 4])
    bad_pre = np.array([True, False, False, False])
    bad_out = np.array([False, False, False, False])
    new_lo, new_hi = kernels.widened_windows(
        lo, hi, cut, bad_pre, bad_out, 10, 1, 2, *_csr(incidence), 2
    )
    assert new_lo.tolist() == [0, 2, 3, 3]  # freed; neighbour of a failure; others
    assert new_hi.tolist() == [6, 6, 10, 5]  # cut 9 on the other link: spread 1, capped at K
    assert np.all(new_lo <= lo)
    assert np.all(new_hi >= hi)


def test_window_columns_are_added_once_and_priced_from_the_segments() -> None:
    lengths = np.array([[1.0, 0.0, 2.0, 3.0, 1.0], [2.0, 2.0, 2.0, 0.0, 0.0]])
    slopes = np.array([[5.0, 4.0, 3.0, 2.0, 1.0], [4.0, 3.0, 2.0, 1.0, 0.5]])
    lo, hi = np.array([3, 1]), np.array([4, 2])
    present = np.zeros((2, 6), bool)
    col_slice, col_k = kernels.missing_columns(lengths, lo, hi, present)
    # Per slice its prefix (-1), then the used segments of its window.
    assert list(zip(col_slice.tolist(), col_k.tolist(), strict=True)) == [
        (0, -1), (0, 3), (1, -1), (1, 1),
    ]  # fmt: skip
    cost, upper = kernels.column_values(lengths, slopes, lo, col_slice, col_k)
    assert upper.tolist() == [3.0, 3.0, 2.0, 2.0]  # prefix 0: segments 0 and 2
    assert cost.tolist() == [3.0, 2.0, 4.0, 3.0]  # a prefix's slope: its smallest
    # Widening adds only what is new; the unused segment 1 of slice 0 gets no column.
    new_lo, new_hi = np.array([0, 0]), np.array([5, 3])
    more_slice, more_k = kernels.missing_columns(lengths, new_lo, new_hi, present)
    assert list(zip(more_slice.tolist(), more_k.tolist(), strict=True)) == [
        (0, 0), (0, 2), (0, 4), (1, 0), (1, 2),
    ]  # fmt: skip
    assert kernels.missing_columns(lengths, new_lo, new_hi, present)[0].size == 0
    # With the prefixes emptied, every used segment is counted once across the columns.
    all_slice = np.concatenate([col_slice, more_slice])
    all_k = np.concatenate([col_k, more_k])
    _, upper = kernels.column_values(lengths, slopes, new_lo, all_slice, all_k)
    total = np.bincount(all_slice, weights=upper, minlength=2)
    assert total.tolist() == lengths.sum(axis=1).tolist()
    # A column keeps its segment: new segments reprice it, 0 where now unused.
    shifted = np.roll(lengths, 1, axis=1)
    _, upper = kernels.column_values(shifted, slopes, new_lo, all_slice, all_k)
    assert upper[all_k >= 0].tolist() == shifted[all_slice, all_k][all_k >= 0].tolist()
