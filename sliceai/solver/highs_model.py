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

from sliceai.solver import kernels

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
    """The rows each slice crosses (CSR by slice), to write CSC columns (one slice each)."""

    def __init__(self, incidence: BoolArray) -> None:
        slices, rows = np.nonzero(incidence.T)  # sorted by slice, then row
        self.n_rows = incidence.shape[0]
        self.count = np.bincount(slices, minlength=incidence.shape[1])
        self.start = np.concatenate([[0], np.cumsum(self.count)[:-1]]).astype(np.int64)
        self.rows = rows.astype(np.int32)

    @property
    def csr(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.intp], IntArray32]:
        """``(start, count, rows)``: slice ``s`` crosses ``rows[start[s]:start[s] + count[s]]``."""
        return self.start, self.count, self.rows

    def of(self, col_slice: npt.NDArray[np.intp]) -> tuple[IntArray32, IntArray32, FloatArray]:
        """``(indptr, indices, data)`` of the columns whose slices are ``col_slice``."""
        indptr, indices = kernels.csc_columns(col_slice, *self.csr)
        return indptr, indices, np.ones(indices.size)


class ReducedLP:
    """A HiGHS model over prefix columns and free segments that can grow and re-solve warm."""

    def __init__(
        self,
        h: Any,
        lengths: FloatArray,
        slopes: FloatArray,
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
        self.lengths, self.slopes, self.columns = lengths, slopes, columns
        self.lo, self.hi = lo, hi
        self.col_slice, cost, upper, self.prefix_col, self.prefix_len = kernels.reduced_columns(
            lengths, slopes, lo, hi
        )
        self.h = h
        col_rows = columns.of(self.col_slice)
        _pass_columns(self.h, cost, upper, columns.n_rows, *col_rows, capacity)
        if link_prices is not None and inc_t is not None:
            path = (inc_t @ link_prices)[self.col_slice]
            self._crash(cost - path, link_prices)

    @property
    def n_columns(self) -> int:
        return int(self.col_slice.size)

    def _crash(self, reduced: FloatArray, prices: FloatArray) -> None:
        """Start from a basis guessed from last interval's link ``prices`` ``(m,)``.

        ``reduced``: the columns' slopes less their slices' path prices.
        Each link that had a price gets as its basic variable the column, among
        the slices crossing it, whose slope is nearest to its slice's path price
        (the segment that slice most likely stops inside); the other links keep
        their slacks basic, and HiGHS puts the nonbasic columns at the bound their
        reduced costs ask for (:func:`sliceai.solver.kernels.crash_basis`). This cuts
        the first run's dual simplex iterations by a third (104 to 67 at 256 slices x
        64 links; all runs of an interval: 313 to 240).
        """
        basic, row_basic = kernels.crash_basis(
            reduced, prices, self.col_slice, *self.columns.csr, CRASH_PASSES
        )
        if not basic.any():
            return
        lower, is_basic, upper = _STATUS
        basis = highspy.HighsBasis()
        # HiGHS moves nonbasic columns to the bound their reduced costs ask for.
        basis.col_status = [is_basic if b else lower for b in basic.tolist()]
        basis.row_status = [is_basic if b else upper for b in row_basic.tolist()]
        basis.valid = True
        self.h.setBasis(basis)

    def widen(self, lo: npt.NDArray[np.intp], hi: npt.NDArray[np.intp]) -> None:
        """Free segments ``[lo, old lo)`` (shrinking prefixes) and ``[old hi, hi)``."""
        seg_slice, cost, upper, shrunk, shrunk_len, shrunk_slope = kernels.widened_columns(
            self.lengths, self.slopes, self.lo, self.hi, lo, hi, self.prefix_col
        )
        self.lo, self.hi = lo, hi
        if shrunk.size:
            self.prefix_len[self.col_slice[shrunk]] = shrunk_len
            self.h.changeColsBounds(shrunk.size, shrunk, np.zeros(shrunk.size), shrunk_len)
            self.h.changeColsCost(shrunk.size, shrunk, shrunk_slope)
        if seg_slice.size:
            indptr, indices, data = self.columns.of(seg_slice)
            self.h.addCols(
                seg_slice.size,
                cost,
                np.zeros(seg_slice.size),
                upper,
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
        has = self.prefix_col >= 0
        y_pre = np.zeros(n)
        y_pre[has] = y[self.prefix_col[has]]
        return x, y_pre, np.abs(np.asarray(sol.row_dual))
