"""The HiGHS side of :mod:`sliceai.solver.lp`: models written from flat CSC arrays.

:class:`ReducedLP` is one direction's reduced segment LP (prefix columns and free
segments) that grows column by column and re-solves from its last basis, and can
start from a basis guessed from last interval's link prices.
"""

from __future__ import annotations

from typing import Any

import highspy
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray32 = npt.NDArray[np.int32]

#: Rounds of choosing basic columns for priced links in :meth:`ReducedLP._crash`.
CRASH_PASSES = 4

#: HiGHS basis status by code: 0 at lower bound, 1 basic, 2 at upper bound.
_STATUS = (
    highspy.HighsBasisStatus.kLower,
    highspy.HighsBasisStatus.kBasic,
    highspy.HighsBasisStatus.kUpper,
)


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

    ``a``: ``(m, n)`` CSC.
    """
    _pass_columns(
        h,
        cost,
        upper,
        a.shape[0],
        np.asarray(a.indptr, dtype=np.int32),
        np.asarray(a.indices, dtype=np.int32),
        np.asarray(a.data, dtype=np.float64),
        row_upper,
    )


def _pass_columns(
    h: Any,
    cost: FloatArray,
    upper: FloatArray,
    n_rows: int,
    indptr: IntArray32,
    indices: IntArray32,
    data: FloatArray,
    row_upper: FloatArray,
) -> None:
    """``pass_lp`` from CSC arrays, through the flat-array ``passModel`` (no HighsLp copies)."""
    n = cost.size
    h.passModel(
        n,
        n_rows,
        data.size,
        int(highspy.MatrixFormat.kColwise),
        int(highspy.ObjSense.kMaximize),
        0.0,
        np.ascontiguousarray(cost, dtype=np.float64),
        np.zeros(n),
        np.ascontiguousarray(upper, dtype=np.float64),
        np.full(n_rows, -highspy.kHighsInf),
        np.ascontiguousarray(row_upper, dtype=np.float64),
        indptr,
        indices,
        data,
        np.zeros(n, dtype=np.int32),
    )


class SliceColumns:
    """The rows each slice crosses, to write CSC columns (one slice each) without scipy."""

    def __init__(self, incidence: BoolArray) -> None:
        slices, rows = np.nonzero(incidence.T)  # sorted by slice, then row
        self.n_rows = incidence.shape[0]
        self.degree = np.bincount(slices, minlength=incidence.shape[1])
        self.start = np.concatenate([[0], np.cumsum(self.degree)[:-1]])
        self.rows = rows.astype(np.int32)

    def of(self, col_slice: npt.NDArray[np.intp]) -> tuple[IntArray32, IntArray32, FloatArray]:
        """``(indptr, indices, data)`` of the columns whose slices are ``col_slice``."""
        degree = self.degree[col_slice]
        indptr = np.zeros(col_slice.size + 1, dtype=np.int32)
        np.cumsum(degree, out=indptr[1:])
        nnz = int(indptr[-1])
        pos = np.repeat(self.start[col_slice] - indptr[:-1], degree) + np.arange(nnz)
        return indptr, self.rows[pos], np.ones(nnz)


class ReducedLP:
    """A HiGHS model over prefix columns and free segments that can grow and re-solve warm."""

    def __init__(
        self,
        h: Any,
        lengths: FloatArray,
        slopes: FloatArray,
        used: BoolArray,
        columns: SliceColumns,
        capacity: FloatArray,
        lo: npt.NDArray[np.intp],
        hi: npt.NDArray[np.intp],
        link_prices: FloatArray | None = None,
        inc_t: FloatArray | None = None,
    ) -> None:
        """``link_prices``: last interval's prices of these links ``(m,)``, to start
        from a guessed basis (:meth:`_crash`), or None; ``inc_t``: ``(n, m)``
        incidence as floats (needed with ``link_prices``)."""
        n, k = lengths.shape
        self.lengths, self.slopes, self.used, self.columns = lengths, slopes, used, columns
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
        cost = np.concatenate([self._prefix_slope(pre), slopes[seg_slice, seg_k]])
        upper = np.concatenate([self.prefix_len[pre], lengths[seg_slice, seg_k]])
        self.h = h
        col_rows = columns.of(self.col_slice)
        _pass_columns(self.h, cost, upper, columns.n_rows, *col_rows, capacity)
        if link_prices is not None and inc_t is not None:
            path = (inc_t @ link_prices)[self.col_slice]
            self._crash(cost - path, link_prices, col_rows[0], col_rows[1])

    @property
    def n_columns(self) -> int:
        return int(self.col_slice.size)

    def _crash(
        self, reduced: FloatArray, prices: FloatArray, indptr: IntArray32, rows: IntArray32
    ) -> None:
        """Start from a basis guessed from last interval's link ``prices`` ``(m,)``.

        ``reduced``: the columns' slopes less their slices' path prices;
        ``indptr``, ``rows``: the columns' links (CSC).
        Each link that had a price gets as its basic variable the column, among
        the slices crossing it, whose slope is nearest to its slice's path price
        (the segment that slice most likely stops inside); the other links keep
        their slacks basic, and HiGHS puts the nonbasic columns at the bound their
        reduced costs ask for. This cuts the first run's dual simplex iterations
        by a third (104 to 67 at 256 slices x 64 links; all runs of an interval: 313
        to 240).
        """
        pair_col = np.repeat(np.arange(reduced.size), np.diff(indptr))
        keep = prices[rows] > 0
        pair_col, pair_row = pair_col[keep], rows[keep]
        if pair_col.size == 0:
            return
        basic = np.zeros(reduced.size, bool)
        row_basic = np.ones(prices.size, bool)
        # Pairs (column, priced link) by link, nearest column first.
        gap = np.abs(reduced)[pair_col]
        order = np.argsort(pair_row + gap / (2.0 * gap.max() + 1.0), kind="stable")
        pair_col, pair_row = pair_col[order], pair_row[order]
        # Per link the nearest column; a column chosen by several links goes to the
        # link with the highest price, and the others choose again among the rest.
        for _ in range(CRASH_PASSES):
            head = np.ones(pair_row.size, bool)
            head[1:] = pair_row[1:] != pair_row[:-1]
            best_col, best_row = pair_col[head], pair_row[head]
            by_col = np.lexsort((-prices[best_row], best_col))
            best_col, best_row = best_col[by_col], best_row[by_col]
            first = np.unique(best_col, return_index=True)[1]
            basic[best_col[first]] = True
            row_basic[best_row[first]] = False
            free = ~basic[pair_col] & row_basic[pair_row]
            pair_col, pair_row = pair_col[free], pair_row[free]
            if pair_col.size == 0:
                break
        lower, is_basic, upper = _STATUS
        col_status = [lower] * reduced.size  # HiGHS moves nonbasic columns to the right bound
        for j in np.flatnonzero(basic).tolist():
            col_status[j] = is_basic
        basis = highspy.HighsBasis()
        basis.col_status = col_status
        basis.row_status = [is_basic if b else upper for b in row_basic.tolist()]
        basis.valid = True
        self.h.setBasis(basis)

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
            indptr, indices, data = self.columns.of(seg_slice)
            self.h.addCols(
                seg_slice.size,
                self.slopes[seg_slice, seg_k],
                np.zeros(seg_slice.size),
                self.lengths[seg_slice, seg_k],
                data.size,
                indptr,
                indices,
                data,
            )
            self.col_slice = np.concatenate([self.col_slice, seg_slice])

    def solution(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """After ``h.run()``: per-slice rates ``(n,)``, prefix fill ``(n,)``, row duals >= 0."""
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
