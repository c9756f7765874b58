"""Exact solution of one direction's segment LP (see :mod:`sliceai.solver.formulation`).

Three exact steps, cheapest first:

1. Links that could carry every slice's full desire are dropped: their rows
   can never bind. Slices that cross only such links get their desire.
2. Where every remaining slice crosses exactly one remaining link, each link
   is a fractional knapsack: sort its segments by slope and fill the
   capacity greedily. That is the LP optimum, found in O(n log n) with numpy.
3. Otherwise the remaining LP goes to HiGHS (dual simplex, no presolve: the
   model is already minimal), restricted to the segments that could matter.
   Around a guess of where each slice's rate will land (the previous plan's
   rate, else each link's own greedy price) a window of segments stays free;
   the segments below it are merged into one prefix column per slice (its
   slope: their smallest) and those above it are left out. The reduced LP's
   duals then prove the restriction harmless (every prefix full, every
   left-out segment no steeper than its slice's path price) or the windows
   widen where the proof failed and HiGHS continues from its last basis.
   When the proof holds the reduced optimum is the full optimum, so the
   answer is exact; a few rounds without proof fall back to the full LP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import highspy
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from sliceai.solver.formulation import Segments

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: Relative slack when deciding that a link cannot bind or a price proof holds.
TOLERANCE = 1e-9

#: Segments each side of the guessed price kept free in the reduced LP.
WINDOW = 3

#: After a failed proof, every slice's window also covers this many segments around
#: the new price (prices move together), besides freeing the failing slices entirely.
SPREAD = 1

#: Rounds of widening before the full LP is solved instead.
MAX_ROUNDS = 6

#: Relative tolerance of the optimality proof (HiGHS duals are feasible to 1e-7).
PROOF_TOLERANCE = 1e-7


def new_highs() -> Any:
    """A silent HiGHS instance without presolve.

    Uses highspy's low-level class when present: the Python wrapper sets up
    callbacks on every construction and prints a banner on stdout once.
    """
    core = getattr(highspy, "_core", None)
    cls = getattr(core, "_Highs", None) or highspy.Highs
    h = cls()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("presolve", "off")
    return h


def pass_lp(
    h: Any, cost: FloatArray, upper: FloatArray, a: sp.csc_matrix, row_upper: FloatArray
) -> None:
    """Give ``h`` the LP ``max cost @ y, a @ y <= row_upper, 0 <= y <= upper``.

    ``a``: ``(m, n)`` CSC. Uses the flat-array ``passModel`` (no HighsLp copies).
    """
    m, n = a.shape
    h.passModel(
        n,
        m,
        a.nnz,
        int(highspy.MatrixFormat.kColwise),
        int(highspy.ObjSense.kMaximize),
        0.0,
        np.ascontiguousarray(cost, dtype=np.float64),
        np.zeros(n),
        np.ascontiguousarray(upper, dtype=np.float64),
        np.full(m, -highspy.kHighsInf),
        np.ascontiguousarray(row_upper, dtype=np.float64),
        np.asarray(a.indptr, dtype=np.int32),
        np.asarray(a.indices, dtype=np.int32),
        np.ascontiguousarray(a.data, dtype=np.float64),
        np.zeros(n, dtype=np.int32),
    )


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
    rate_guess: FloatArray | None = None,
) -> DirectionResult:
    """Solve ``max sum slopes*y, incidence @ x <= capacity`` exactly.

    ``incidence``: ``(n_links, n_slices)`` bool; ``capacity``: ``(n_links,)``
    normalised; ``price_guess``: ``(n_links,)`` or None; ``rate_guess``: ``(n_slices,)``
    normalised (e.g. the previous plan) or None. A rate guess is preferred: with
    the churn cost most slices stay on the kink at their previous rate, where
    the duals are not unique but the rates are.
    """
    lengths, slopes = segments.lengths, segments.slopes
    n_links = incidence.shape[0]
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
        lengths[cols],
        slopes[cols],
        sub_inc,
        capacity[rows],
        guess,
        None if rate_guess is None else rate_guess[cols],
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
    rate_guess: FloatArray | None,
) -> tuple[FloatArray, FloatArray, int]:
    """The LP over segments that could matter, proven exact by its duals (see module doc).

    Per slice the segments ``[0, lo)`` are merged into one prefix column (slope:
    their smallest), ``[lo, hi)`` are free columns and ``[hi, K)`` are left
    out. At the reduced optimum, a full prefix and left-out segments no steeper
    than the slice's path price prove the full LP optimal; otherwise the window
    widens where the proof failed and HiGHS continues from its last basis.
    """
    n, k = lengths.shape
    inc = incidence.astype(np.float64)
    used = lengths > 0
    if rate_guess is not None:
        ends = np.cumsum(lengths, axis=1)
        cut = (ends <= rate_guess[:, None] * (1 + 1e-12)).sum(axis=1)
    else:
        if price_guess is None:
            price_guess = _isolated_prices(lengths, slopes, incidence, capacity)
        cut = _cut(used, slopes, inc.T @ price_guess)
    lo = np.maximum(cut - WINDOW, 0)
    hi = np.minimum(cut + WINDOW, k)
    model = _ReducedLP(lengths, slopes, used, sp.csc_matrix(inc), capacity, lo, hi)
    idx = np.arange(k)
    for _ in range(MAX_ROUNDS):
        x, y_pre, prices = model.run()
        path = inc.T @ prices
        tol = PROOF_TOLERANCE * np.maximum(1.0, path)
        pre_len = model.prefix_len
        bad_pre = (pre_len > 0) & (y_pre < pre_len * (1 - 1e-9) - 1e-12)
        left_out = used & (idx[None, :] >= hi[:, None])
        bad_out = (left_out & (slopes > (path + tol)[:, None])).any(axis=1)
        if not (bad_pre.any() or bad_out.any()):
            return x, prices, model.n_columns
        new_lo = np.where(bad_pre, 0, lo)
        new_hi = np.where(bad_out, k, hi)
        cut = _cut(used, slopes, path)
        new_lo = np.minimum(new_lo, np.maximum(cut - SPREAD, 0))
        new_hi = np.maximum(new_hi, np.minimum(cut + SPREAD, k))
        model.widen(new_lo, new_hi)
        lo, hi = new_lo, new_hi
    model = _ReducedLP(
        lengths, slopes, used, sp.csc_matrix(inc), capacity, np.zeros(n, np.intp), np.full(n, k)
    )
    x, _, prices = model.run()
    return x, prices, model.n_columns


class _ReducedLP:
    """A HiGHS model over prefix columns and free segments that can grow and re-solve warm."""

    def __init__(
        self,
        lengths: FloatArray,
        slopes: FloatArray,
        used: BoolArray,
        inc: sp.csc_matrix,
        capacity: FloatArray,
        lo: npt.NDArray[np.intp],
        hi: npt.NDArray[np.intp],
    ) -> None:
        n, k = lengths.shape
        self.lengths, self.slopes, self.used, self.inc = lengths, slopes, used, inc
        self.idx = np.arange(k)
        self.lo, self.hi = lo, hi
        prefix = self.idx[None, :] < lo[:, None]
        self.prefix_len = (lengths * prefix).sum(axis=1)
        pre = np.flatnonzero(self.prefix_len > 0)
        self.prefix_col = np.full(n, -1)
        self.prefix_col[pre] = np.arange(pre.size)
        free = used & ~prefix & (self.idx[None, :] < hi[:, None])
        seg_slice, seg_k = np.nonzero(free)
        self.col_slice = np.concatenate([pre, seg_slice])
        self.col_is_segment = np.concatenate(
            [np.zeros(pre.size, bool), np.ones(seg_slice.size, bool)]
        )
        cost = np.concatenate([self._prefix_slope(pre), slopes[seg_slice, seg_k]])
        upper = np.concatenate([self.prefix_len[pre], lengths[seg_slice, seg_k]])
        self.h = new_highs()
        pass_lp(self.h, cost, upper, inc[:, self.col_slice], capacity)

    @property
    def n_columns(self) -> int:
        return int(self.col_slice.size)

    def _prefix_slope(self, slices: npt.NDArray[np.intp]) -> FloatArray:
        prefix = self.used[slices] & (self.idx[None, :] < self.lo[slices, None])
        smallest = np.where(prefix, self.slopes[slices], np.inf).min(axis=1)
        return np.where(np.isfinite(smallest), smallest, 0.0)

    def widen(self, lo: npt.NDArray[np.intp], hi: npt.NDArray[np.intp]) -> None:
        """Free segments ``[lo, old lo)`` (shrinking prefixes) and ``[old hi, hi)``."""
        i = self.idx[None, :]
        new = self.used & (
            ((i >= lo[:, None]) & (i < self.lo[:, None]))
            | ((i >= self.hi[:, None]) & (i < hi[:, None]))
        )
        shrunk = np.flatnonzero((lo < self.lo) & (self.prefix_col >= 0))
        self.lo, self.hi = lo, hi
        if shrunk.size:
            self.prefix_len[shrunk] = (self.lengths[shrunk] * (i < lo[shrunk, None])).sum(axis=1)
            cols = self.prefix_col[shrunk].astype(np.int32)
            self.h.changeColsBounds(cols.size, cols, np.zeros(cols.size), self.prefix_len[shrunk])
            self.h.changeColsCost(cols.size, cols, self._prefix_slope(shrunk))
        seg_slice, seg_k = np.nonzero(new)
        if seg_slice.size:
            a = self.inc[:, seg_slice]
            self.h.addCols(
                seg_slice.size,
                self.slopes[seg_slice, seg_k],
                np.zeros(seg_slice.size),
                self.lengths[seg_slice, seg_k],
                a.nnz,
                np.asarray(a.indptr, dtype=np.int32),
                np.asarray(a.indices, dtype=np.int32),
                a.data,
            )
            self.col_slice = np.concatenate([self.col_slice, seg_slice])
            self.col_is_segment = np.concatenate(
                [self.col_is_segment, np.ones(seg_slice.size, bool)]
            )

    def run(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Solve; returns per-slice rates ``(n,)``, prefix fill ``(n,)``, row duals >= 0."""
        self.h.run()
        status = self.h.getModelStatus()
        if status != highspy.HighsModelStatus.kOptimal:
            raise RuntimeError(f"HiGHS stopped: {self.h.modelStatusToString(status)}")
        sol = self.h.getSolution()
        y = np.asarray(sol.col_value)
        n = self.lengths.shape[0]
        x = np.bincount(self.col_slice, weights=y, minlength=n).astype(np.float64)
        y_pre = np.zeros(n)
        has = self.prefix_col >= 0
        y_pre[has] = y[self.prefix_col[has]]
        return x, y_pre, np.abs(np.asarray(sol.row_dual))


def _cut(used: BoolArray, slopes: FloatArray, path: FloatArray) -> npt.NDArray[np.intp]:
    """Per slice, the index of the first used segment no steeper than its path price (K if none)."""
    below = used & (slopes <= path[:, None])
    first = np.where(below.any(axis=1), below.argmax(axis=1), slopes.shape[1])
    return np.asarray(first, dtype=np.intp)


def _isolated_prices(
    lengths: FloatArray, slopes: FloatArray, incidence: BoolArray, capacity: FloatArray
) -> FloatArray:
    """Each link's greedy price as if it were the only constraint, ``(n_links,)``."""
    n_links = incidence.shape[0]
    link_idx, slice_idx = np.nonzero(incidence)
    _, prices = _greedy(lengths[slice_idx], slopes[slice_idx], link_idx, capacity)
    return prices[:n_links]
