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
   A failing slice is freed entirely; the other slices on its links get a
   window of ``NEIGHBOUR_SPREAD`` around their new price (their prices moved
   too: most second-round failures are such neighbours), the rest ``SPREAD``.
   When last interval's reduced LP covered the same slices and links, it is
   updated in place instead (:meth:`sliceai.solver.highs_model.ReducedLP.update`):
   HiGHS goes on from its optimal basis with the windows it grew (at 256 slices
   x 64 links: 158 dual simplex iterations and 3.5 runs an interval, against 239
   and 4.9 from a fresh model). A fresh model starts from a basis guessed from
   last interval's link prices (:meth:`sliceai.solver.highs_model.ReducedLP._crash`).

:func:`solve_directions` takes several such problems (DL and UL) at once and
hands only HiGHS's ``run`` to worker threads: HiGHS releases the GIL, so one
direction's LP runs while this thread checks the other's proof, and no numpy
work waits behind another thread for the GIL.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sliceai.solver import kernels
from sliceai.solver.formulation import Segments
from sliceai.solver.highs_model import ReducedLP, SliceColumns, new_highs

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: Relative slack when deciding that a link cannot bind or a price proof holds.
TOLERANCE = 1e-9

#: Segments each side of the guessed price kept free in the reduced LP.
WINDOW = 3

#: After a failed proof, every slice's window also covers this many segments around
#: the new price (prices move together), besides freeing the failing slices entirely.
SPREAD = 1

#: The same for slices that share a link with a failing slice.
NEIGHBOUR_SPREAD = 2

#: Rounds of widening before the full LP is solved instead.
MAX_ROUNDS = 6

#: Relative tolerance of the optimality proof (HiGHS duals are feasible to 1e-7).
PROOF_TOLERANCE = 1e-7


@dataclass(frozen=True)
class DirectionResult:
    """Solution of one direction: ``rates`` ``(n_slices,)`` and ``prices`` ``(n_links,)``
    normalised (prices are per normalised unit, >= 0); ``method`` names the step that solved it."""

    rates: FloatArray
    prices: FloatArray
    method: str
    lp_columns: int = 0
    model: ReducedLP | None = None


@dataclass(frozen=True)
class DirectionProblem:
    """One direction's LP: ``max sum slopes*y`` subject to ``incidence @ x <= capacity``.

    ``incidence``: ``(n_links, n_slices)`` bool; ``capacity``: ``(n_links,)``
    normalised; ``price_guess``: ``(n_links,)`` or None; ``rate_guess``:
    ``(n_slices,)`` normalised (e.g. the previous plan) or None. A rate guess is
    preferred: with the churn cost most slices stay on the kink at their previous
    rate, where the duals are not unique but the rates are. ``highs``: an
    instance from :func:`new_highs` to reuse (``passModel`` replaces its model;
    a new instance costs about 0.15 ms), or None for a new one. ``warm``: the last
    interval's reduced LP (:attr:`DirectionResult.model`, on ``highs``), updated in
    place when it covers the same slices and links: HiGHS then starts from its
    optimal basis and the windows that last interval needed.
    """

    segments: Segments
    incidence: BoolArray
    capacity: FloatArray
    price_guess: FloatArray | None = None
    rate_guess: FloatArray | None = None
    highs: Any = None
    warm: ReducedLP | None = None


def solve_direction(problem: DirectionProblem) -> DirectionResult:
    """Solve one direction exactly (see :func:`solve_directions`)."""
    return solve_directions([problem])[0]


def solve_directions(
    problems: Sequence[DirectionProblem], pool: Executor | None = None
) -> list[DirectionResult]:
    """Solve each problem exactly; with a ``pool`` (two workers), their HiGHS runs
    go side by side.

    Only ``run`` leaves this thread: HiGHS releases the GIL, so while one
    problem's LP runs on a worker, this thread checks another's proof and widens
    its windows, and no numpy work waits for the GIL behind another thread's.
    """
    results: list[DirectionResult | None] = [None] * len(problems)
    screens: list[tuple[int, _Screen]] = []
    running: dict[Future[Any], tuple[int, _Screen]] = {}
    for i, problem in enumerate(problems):
        first = _fast_paths(problem)
        if isinstance(first, DirectionResult):
            results[i] = first
        elif pool is None:
            screens.append((i, first))
        else:
            running[pool.submit(first.model.h.run)] = (i, first)
    for i, screen in screens:  # one after the other on this thread
        done = None
        while done is None:
            screen.model.h.run()
            done = screen.step()
        results[i] = done
    try:
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                i, screen = running.pop(future)
                future.result()
                done = screen.step()
                if done is None and pool is not None:  # (running is only filled with a pool)
                    running[pool.submit(screen.model.h.run)] = (i, screen)
                results[i] = done
    finally:  # on an error, no run may outlive the call: its HiGHS instance is reused
        wait(running)
    return [r for r in results if r is not None]


def _fast_paths(problem: DirectionProblem) -> DirectionResult | _Screen:
    """Steps 1 and 2 of the module doc, or the reduced LP of step 3 ready to run."""
    segments, incidence, capacity = problem.segments, problem.incidence, problem.capacity
    lengths, slopes = segments.lengths, segments.slopes
    desire = segments.desire
    load = incidence.astype(np.float64) @ desire
    active = load > capacity * (1 + TOLERANCE)
    rates = desire.copy()
    prices = np.zeros(incidence.shape[0])
    if not np.any(active):
        return DirectionResult(rates, prices, "unconstrained")
    rows = np.flatnonzero(active)
    touched = incidence[rows].any(axis=0)
    per_slice = incidence[rows].sum(axis=0)
    if np.all(per_slice[touched] == 1):
        row_of = np.argmax(incidence[rows], axis=0)  # index into rows, valid where touched
        sub_rates, sub_prices = _greedy(
            lengths[touched], slopes[touched], row_of[touched], capacity[rows]
        )
        rates[touched] = sub_rates
        prices[rows] = sub_prices
        return DirectionResult(rates, prices, "greedy")
    cols = np.flatnonzero(touched)
    return _Screen(problem, rates, prices, rows, cols)


class _Screen:
    """Step 3 for one direction: the reduced LP, its windows and the duals' proof.

    Per slice the segments ``[0, lo)`` are merged into one prefix column (slope:
    their smallest), ``[lo, hi)`` are free columns and ``[hi, K)`` are left
    out. At the reduced optimum, a full prefix and left-out segments no steeper
    than the slice's path price prove the full LP optimal; otherwise the window
    widens where the proof failed and HiGHS continues from its last basis.
    """

    def __init__(
        self,
        problem: DirectionProblem,
        rates: FloatArray,
        prices: FloatArray,
        rows: npt.NDArray[np.intp],
        cols: npt.NDArray[np.intp],
    ) -> None:
        self.rates, self.prices, self.rows, self.cols = rates, prices, rows, cols
        self.lengths = problem.segments.lengths[cols]
        self.slopes = problem.segments.slopes[cols]
        self.capacity = problem.capacity[rows]
        self.rounds = 0
        self.full = False
        self.highs = problem.highs if problem.highs is not None else new_highs()
        k = self.lengths.shape[1]
        warm = problem.warm
        if warm is not None and warm.fits(rows, cols, k):
            self.model = warm
            self.inc_t, self.columns = warm.inc_t, warm.columns
            warm.update(self.lengths, self.slopes, self.capacity)
            self.lo, self.hi = warm.lo, warm.hi
            return
        sub_inc = problem.incidence[np.ix_(rows, cols)]
        self.inc_t = sub_inc.T.astype(np.float64)  # (n, m): path prices = inc_t @ prices
        self.columns = SliceColumns(sub_inc)
        if problem.rate_guess is not None:
            cut = kernels.cut_at_rate(self.lengths, problem.rate_guess[cols])
        else:
            guess = problem.price_guess
            if guess is None:
                sub_prices = _isolated_prices(self.lengths, self.slopes, sub_inc, self.capacity)
            else:
                sub_prices = guess[rows]
            cut = kernels.cut_at_price(self.lengths, self.slopes, self.inc_t @ sub_prices)
        self.lo = np.maximum(cut - WINDOW, 0)
        self.hi = np.minimum(cut + WINDOW, k)
        guess = None if problem.price_guess is None else problem.price_guess[rows]
        self.model = self._model(self.lo, self.hi, guess)
        self.model.tag(rows, cols)

    def _model(
        self, lo: npt.NDArray[np.intp], hi: npt.NDArray[np.intp], prices: FloatArray | None = None
    ) -> ReducedLP:
        """This direction's reduced LP with windows ``[lo, hi)``, started from a basis
        guessed from link ``prices`` when given."""
        return ReducedLP(
            self.highs,
            self.lengths,
            self.slopes,
            self.columns,
            self.capacity,
            lo,
            hi,
            self.inc_t,
            prices,
        )

    def step(self) -> DirectionResult | None:
        """After a run: the proven result, or None once the windows have widened."""
        x, y_pre, sub_prices = self.model.solution()
        if not self.full:
            path = self.inc_t @ sub_prices
            bad_pre, bad_out = kernels.proof_failures(
                self.lengths,
                self.slopes,
                self.hi,
                path,
                self.model.prefix_len,
                y_pre,
                PROOF_TOLERANCE,
            )
            if bad_pre.any() or bad_out.any():
                self._widen(bad_pre, bad_out, path)
                return None
        self.rates[self.cols] = x
        self.prices[self.rows] = sub_prices
        warm = None if self.full else self.model
        return DirectionResult(self.rates, self.prices, "highs", self.model.n_columns, warm)

    def _widen(self, bad_pre: BoolArray, bad_out: BoolArray, path: FloatArray) -> None:
        n, k = self.lengths.shape
        self.rounds += 1
        if self.rounds >= MAX_ROUNDS:  # give up on the restriction: the full LP, no proof
            self.full = True
            self.model = self._model(np.zeros(n, np.intp), np.full(n, k))
            return
        cut = kernels.cut_at_price(self.lengths, self.slopes, path)
        # Prices move on the links of the failing slices: their other slices get a
        # wider window than the rest.
        lo, hi = kernels.widened_windows(
            self.lo,
            self.hi,
            cut,
            bad_pre,
            bad_out,
            k,
            SPREAD,
            NEIGHBOUR_SPREAD,
            *self.columns.csr,
            self.capacity.size,
        )
        self.model.widen(lo, hi)
        self.lo, self.hi = lo, hi


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


def _isolated_prices(
    lengths: FloatArray, slopes: FloatArray, incidence: BoolArray, capacity: FloatArray
) -> FloatArray:
    """Each link's greedy price as if it were the only constraint, ``(n_links,)``."""
    n_links = incidence.shape[0]
    link_idx, slice_idx = np.nonzero(incidence)
    _, prices = _greedy(lengths[slice_idx], slopes[slice_idx], link_idx, capacity)
    return prices[:n_links]
