"""Exact solution of one direction's segment LP (see :mod:`sliceai.solver.formulation`).

Three exact steps, cheapest first:

1. Links that could carry every slice's full desire are dropped: their rows
   can never bind. Slices that cross only such links get their desire.
2. Where every remaining slice crosses exactly one remaining link, each link
   is a fractional knapsack: sort its segments by slope and fill the
   capacity greedily. That is the LP optimum, found in O(n log n) with numpy.
3. Otherwise the remaining LP goes to HiGHS (dual simplex, no presolve: the
   model is already minimal), with only the segments that could matter. A
   guess of each slice's path price (the previous interval's duals, or each
   link's own greedy price) fixes segments far above it full and far below it
   empty; the reduced LP's duals then prove the fixing right (every fixed-full
   segment's slope >= its slice's path price, every fixed-empty one's <=) or
   the wrong ones are freed and the LP is solved again. When the proof holds
   the reduced optimum is the full optimum, so the answer is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import highspy
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from sliceai.solver.formulation import Segments

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: Relative slack when deciding that a link cannot bind or a price proof holds.
TOLERANCE = 1e-9


@dataclass(frozen=True)
class DirectionResult:
    """Solution of one direction: ``rates`` ``(n_slices,)`` and ``prices`` ``(n_links,)``
    normalised (prices are per normalised unit, >= 0); ``method`` names the step that solved it."""

    rates: FloatArray
    prices: FloatArray
    method: str
    lp_columns: int = 0


def solve_direction(
    segments: Segments,
    incidence: BoolArray,
    capacity: FloatArray,
    price_guess: FloatArray | None = None,
) -> DirectionResult:
    """Solve ``max sum slopes*y, incidence @ x <= capacity`` exactly.

    ``incidence``: ``(n_links, n_slices)`` bool; ``capacity``: ``(n_links,)``
    normalised; ``price_guess``: ``(n_links,)`` or None.
    """
    lengths, slopes = segments.lengths, segments.slopes
    n_links, n_slices = incidence.shape
    desire = segments.desire
    inc = incidence.astype(np.float64)
    load = inc @ desire
    active = load > capacity * (1 + TOLERANCE)
    rates = desire.copy()
    prices = np.zeros(n_links)
    if not np.any(active):
        return DirectionResult(rates, prices, "unconstrained")
    touched = incidence[active].any(axis=0)
    per_slice = incidence[active].sum(axis=0)
    if np.all(per_slice[touched] == 1):
        rows = np.flatnonzero(active)
        row_of = np.argmax(incidence[active], axis=0)  # index into rows, valid where touched
        sub_rates, sub_prices = _greedy(
            lengths[touched], slopes[touched], row_of[touched], capacity[rows]
        )
        rates[touched] = sub_rates
        prices[rows] = sub_prices
        return DirectionResult(rates, prices, "greedy")
    rows = np.flatnonzero(active)
    cols = np.flatnonzero(touched)
    sub_inc = incidence[np.ix_(rows, cols)]
    guess = None if price_guess is None else price_guess[rows]
    sub_rates, sub_prices, n_cols = _screened_lp(
        lengths[cols], slopes[cols], sub_inc, capacity[rows], guess
    )
    rates[cols] = sub_rates
    prices[rows] = sub_prices
    return DirectionResult(rates, prices, "highs", n_cols)


def _greedy(
    lengths: FloatArray, slopes: FloatArray, row_of: npt.NDArray[np.intp], capacity: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Fractional knapsack per link. ``lengths``/``slopes`` ``(n, K)``, ``row_of`` ``(n,)``."""
    n, k = lengths.shape
    seg_row = np.repeat(row_of, k)
    flat_len = lengths.ravel()
    flat_slope = slopes.ravel()
    order = np.lexsort((-flat_slope, seg_row))
    cum = np.cumsum(flat_len[order])
    row_sorted = seg_row[order]
    # Cumulative length of earlier rows, to restart the sum at each row.
    starts = np.searchsorted(row_sorted, np.arange(capacity.size))
    offset = np.concatenate([[0.0], cum])[starts][row_sorted]
    before = cum - flat_len[order] - offset
    fill_sorted = np.clip(capacity[row_sorted] - before, 0.0, flat_len[order])
    fill = np.empty_like(flat_len)
    fill[order] = fill_sorted
    # Price: slope of the marginal segment (partly filled, or first left empty) per row.
    partial = (fill_sorted < flat_len[order]) & (flat_len[order] > 0)
    prices = np.zeros(capacity.size)
    marg_rows = row_sorted[partial]
    marg_slopes = flat_slope[order][partial]
    # the first partial segment of each row (highest slope) is the marginal one
    first = np.unique(marg_rows, return_index=True)
    prices[first[0]] = marg_slopes[first[1]]
    return fill.reshape(n, k).sum(axis=1), prices


def _screened_lp(
    lengths: FloatArray,
    slopes: FloatArray,
    incidence: BoolArray,
    capacity: FloatArray,
    price_guess: FloatArray | None,
) -> tuple[FloatArray, FloatArray, int]:
    """The LP over segments that could matter, proven exact by its duals (see module doc)."""
    n, k = lengths.shape
    inc = incidence.astype(np.float64)
    if price_guess is None:
        price_guess = _isolated_prices(lengths, slopes, incidence, capacity)
    path = inc.T @ price_guess  # (n,) guessed path price per slice
    # Window around the guess: free segments within a factor of the guess.
    used = lengths > 0
    free = (
        used
        & (slopes <= 2.0 * path[:, None] + TOLERANCE)
        & (slopes >= 0.25 * path[:, None] - TOLERANCE)
    )
    full = used & ~free & (slopes > 2.0 * path[:, None])
    for _ in range(6):
        fixed_load = inc @ (lengths * full).sum(axis=1)
        y, prices = _highs(lengths, slopes, free, inc, capacity - fixed_load)
        path = inc.T @ prices
        bad_full = full & (slopes < path[:, None] * (1 - 1e-7) - 1e-9)
        bad_empty = used & ~full & ~free & (slopes > path[:, None] * (1 + 1e-7) + 1e-9)
        if not (bad_full.any() or bad_empty.any()):
            x = (lengths * full).sum(axis=1) + y
            return x, prices, int(free.sum())
        free |= bad_full | bad_empty
        full &= ~bad_full
    free = used.copy()
    y, prices = _highs(lengths, slopes, free, inc, capacity)
    return y, prices, int(free.sum())


def _isolated_prices(
    lengths: FloatArray, slopes: FloatArray, incidence: BoolArray, capacity: FloatArray
) -> FloatArray:
    """Each link's greedy price as if it were the only constraint, ``(n_links,)``."""
    n_links = incidence.shape[0]
    link_idx, slice_idx = np.nonzero(incidence)
    _, prices = _greedy(lengths[slice_idx], slopes[slice_idx], link_idx, capacity)
    return prices[:n_links]


def _highs(
    lengths: FloatArray, slopes: FloatArray, free: BoolArray, inc: FloatArray, capacity: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Solve the LP over the ``free`` segments; returns per-slice rates and row duals >= 0."""
    n, _ = lengths.shape
    slice_of, seg_of = np.nonzero(free)
    m = inc.shape[0]
    a = sp.csc_matrix(inc)[:, slice_of]
    ncol = slice_of.size
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("presolve", "off")
    lp = highspy.HighsLp()
    lp.num_col_ = ncol
    lp.num_row_ = m
    lp.sense_ = highspy.ObjSense.kMaximize
    lp.col_cost_ = slopes[slice_of, seg_of]
    lp.col_lower_ = np.zeros(ncol)
    lp.col_upper_ = lengths[slice_of, seg_of]
    lp.row_lower_ = np.full(m, -highspy.kHighsInf)
    lp.row_upper_ = capacity
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = a.indptr
    lp.a_matrix_.index_ = a.indices
    lp.a_matrix_.value_ = a.data
    lp.a_matrix_.num_col_ = ncol
    lp.a_matrix_.num_row_ = m
    h.passModel(lp)
    h.run()
    sol = h.getSolution()
    y = np.asarray(sol.col_value)
    duals = np.abs(np.asarray(sol.row_dual))
    x = np.bincount(slice_of, weights=y, minlength=n)
    return x, duals
