"""The HiGHS side of :mod:`sliceai.solver.lp`: models written from flat CSC arrays.

:class:`ReducedLP` is one direction's reduced segment LP (prefix columns and free
segments) that grows column by column and re-solves from its last basis, can start
from a basis guessed from last interval's link prices, and can take the next
interval's segments in place to go on from its own optimal basis.
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

#: A model kept for the next interval (:meth:`ReducedLP.update`) is rebuilt instead once
#: its windows have grown past this many columns per slice.
MAX_COLUMNS_PER_SLICE = 8

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
    """A HiGHS model over prefix columns and window segments that can grow, re-solve warm,
    and take the next interval's segments in place.

    Column ``c`` stands for segment ``col_k[c]`` of slice ``col_slice[c]`` (-1: the
    slice's prefix, its segments below ``lo``), also once that segment is unused
    (upper bound 0), so a later interval's segments change costs and bounds in place
    and add only the columns they newly use (:meth:`update`), and HiGHS goes on from
    the last optimal basis.
    """

    def __init__(
        self,
        h: Any,
        lengths: FloatArray,
        slopes: FloatArray,
        columns: SliceColumns,
        capacity: FloatArray,
        lo: npt.NDArray[np.intp],
        hi: npt.NDArray[np.intp],
        inc_t: FloatArray,
        link_prices: FloatArray | None = None,
    ) -> None:
        """``inc_t``: ``(n, m)`` incidence as floats (path prices are ``inc_t @ prices``);
        ``link_prices``: last interval's prices of these links ``(m,)``, to start from a
        guessed basis (:meth:`_crash`), or None."""
        self.h, self.columns = h, columns
        self.lengths, self.slopes = lengths, slopes
        self.lo, self.hi = lo, hi
        self.rows: npt.NDArray[np.intp] | None = None
        self.cols: npt.NDArray[np.intp] | None = None
        self.inc_t = inc_t
        n, k = lengths.shape
        self.present = np.zeros((n, k + 1), bool)  # [:, 0] prefix, [:, j + 1] segment j
        self.col_slice, self.col_k = kernels.missing_columns(lengths, lo, hi, self.present)
        cost, self.upper = kernels.column_values(lengths, slopes, lo, self.col_slice, self.col_k)
        _pass_columns(h, cost, self.upper, columns.n_rows, *columns.of(self.col_slice), capacity)
        if link_prices is not None:
            path = (inc_t @ link_prices)[self.col_slice]
            self._crash(cost - path, link_prices)

    @property
    def n_columns(self) -> int:
        return int(self.col_slice.size)

    def tag(self, rows: npt.NDArray[np.intp], cols: npt.NDArray[np.intp]) -> None:
        """Record which links (``rows``) and slices (``cols``) of the whole problem this
        model covers, for :meth:`fits`."""
        self.rows, self.cols = rows, cols

    def fits(self, rows: npt.NDArray[np.intp], cols: npt.NDArray[np.intp], k: int) -> bool:
        """Whether the next interval's reduced LP over these links and slices, with ``k``
        segments per slice, can be this one updated (:meth:`update`): same links and
        slices, and not grown past :data:`MAX_COLUMNS_PER_SLICE`."""
        return (
            self.rows is not None
            and self.cols is not None
            and self.lengths.shape[1] == k
            and np.array_equal(self.rows, rows)
            and np.array_equal(self.cols, cols)
            and self.n_columns <= MAX_COLUMNS_PER_SLICE * cols.size
        )

    @property
    def prefix_len(self) -> FloatArray:
        """Per slice the length of its prefix column (0 if none) ``(n,)``."""
        out = np.zeros(self.lengths.shape[0])
        pre = np.flatnonzero(self.col_k < 0)
        out[self.col_slice[pre]] = self.upper[pre]
        return out

    def update(self, lengths: FloatArray, slopes: FloatArray, capacity: FloatArray) -> None:
        """The next interval's segments (same slices, same ``K``) and link ``capacity``:
        every column's cost and bound change in place, the basis stays."""
        self.lengths, self.slopes = lengths, slopes
        cost, self.upper = kernels.column_values(
            lengths, slopes, self.lo, self.col_slice, self.col_k
        )
        n = cost.size
        cols = np.arange(n, dtype=np.int32)
        self.h.changeColsCost(n, cols, cost)
        self.h.changeColsBounds(n, cols, np.zeros(n), self.upper)
        m = capacity.size
        rows = np.arange(m, dtype=np.int32)
        self.h.changeRowsBounds(m, rows, np.full(m, -highspy.kHighsInf), capacity)
        self._add_missing()

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
        shrunk = np.flatnonzero((self.col_k < 0) & (lo[self.col_slice] < self.lo[self.col_slice]))
        self.lo, self.hi = lo, hi
        if shrunk.size:
            cost, upper = kernels.column_values(
                self.lengths, self.slopes, lo, self.col_slice[shrunk], self.col_k[shrunk]
            )
            self.upper[shrunk] = upper
            cols = shrunk.astype(np.int32)
            self.h.changeColsBounds(cols.size, cols, np.zeros(cols.size), upper)
            self.h.changeColsCost(cols.size, cols, cost)
        self._add_missing()

    def _add_missing(self) -> None:
        """Add the columns the windows need and the model lacks."""
        new_slice, new_k = kernels.missing_columns(self.lengths, self.lo, self.hi, self.present)
        if new_slice.size:
            cost, upper = kernels.column_values(
                self.lengths, self.slopes, self.lo, new_slice, new_k
            )
            indptr, indices, data = self.columns.of(new_slice)
            self.h.addCols(
                new_slice.size, cost, np.zeros(new_slice.size), upper, data.size, indptr,
                indices, data,
            )  # fmt: skip
            self.col_slice = np.concatenate([self.col_slice, new_slice])
            self.col_k = np.concatenate([self.col_k, new_k])
            self.upper = np.concatenate([self.upper, upper])

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
        pre = np.flatnonzero(self.col_k < 0)
        y_pre[self.col_slice[pre]] = y[pre]
        return x, y_pre, np.abs(np.asarray(sol.row_dual))
