"""The solver's inner loops, compiled with numba: plain loops over slices and segments.

At 256 slices x 64 links an interval's LP work is a few dozen small array steps
per direction and round (merge breakpoints, write the reduced LP's columns, guess
a basis, check the duals' proof, widen windows). As numpy calls each costs tens of
microseconds of overhead, about 6-7 ms an interval, as much as HiGHS itself; as
compiled loops (:func:`sliceai.compiled.compiled`) they cost a few microseconds each.
Every kernel takes arrays and returns new ones (:func:`missing_columns` also marks
what it adds in ``present``).

Arrays: ``lengths``/``slopes`` ``(n, K)`` segments per slice (slopes non-increasing
along K, unused segments have length 0); ``lo``/``hi`` ``(n,)`` windows; a slice's
links as CSR arrays ``link_start``/``link_count`` ``(n,)`` into ``links``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sliceai.compiled import compiled


@compiled
def merge_segments(
    points: Any,
    demand_slopes: Any,
    weight: Any,
    floor: Any,
    floor_bonus: Any,
    target: Any,
    guarantee_bonus: Any,
    cap: Any,
    previous: Any,
    has_previous: bool,
    scale: float,
    churn: float,
    reserve: float,
) -> tuple[Any, Any]:
    """``(lengths, slopes)`` ``(n, P + 2 + has_previous)`` of every slice's objective.

    Per slice the breakpoints 0, the demand points, floor, target (and previous
    rate) are sorted (stably), clipped at the cap, and each segment's slope is the
    weighted demand slope after the last demand point at or below it, plus the
    floor and guarantee bonuses below those points, the churn cost around the
    previous rate, less the reserve cost. Segments with slope <= 0 get length 0.
    See :func:`sliceai.solver.formulation.build_segments` for the arguments.
    """
    n, p = points.shape
    r = p + 3 + (1 if has_previous else 0)
    lengths = np.zeros((n, r - 1))
    slopes = np.zeros((n, r - 1))
    vals = np.empty(r)
    order = np.empty(r, np.int64)
    for i in range(n):
        vals[0] = 0.0
        for j in range(p):
            vals[1 + j] = points[i, j] / scale
        f = floor[i] / scale
        g = target[i] / scale
        vals[p + 1] = f
        vals[p + 2] = g
        prev = 0.0
        if has_previous:
            prev = previous[i] / scale
            vals[p + 3] = prev
        top = vals.max()
        if np.isfinite(cap[i]):
            top = min(top, cap[i] / scale)
        for j in range(r):  # clip, and insertion-sort the indices (stable)
            vals[j] = min(vals[j], top)
            order[j] = j
            m = j
            while m > 0 and vals[order[m - 1]] > vals[j]:
                order[m] = order[m - 1]
                m -= 1
            order[m] = j
        seen = 0  # demand points at or below the segment's start
        for j in range(r - 1):
            if 1 <= order[j] <= p:
                seen += 1
            a = vals[order[j]]
            b = vals[order[j + 1]]
            mid = 0.5 * (a + b)
            s = weight[i] * (1.0 if seen == 0 else demand_slopes[i, seen - 1])
            if mid < f:
                s += floor_bonus[i]
            if mid < g:
                s += guarantee_bonus[i]
            if has_previous:
                s += churn if mid < prev else -churn
            s -= reserve
            slopes[i, j] = s
            lengths[i, j] = b - a if s > 0 else 0.0
    return lengths, slopes


@compiled
def cut_at_rate(lengths: Any, rate: Any) -> Any:
    """Per slice, how many segments end at or below its ``rate`` ``(n,)``."""
    n, k = lengths.shape
    cut = np.zeros(n, np.int64)
    for i in range(n):
        end = 0.0
        limit = rate[i] * (1 + 1e-12)
        for j in range(k):
            end += lengths[i, j]
            if end <= limit:
                cut[i] += 1
    return cut


@compiled
def cut_at_price(lengths: Any, slopes: Any, path: Any) -> Any:
    """Per slice, the first used segment no steeper than its path price ``(n,)`` (K if none)."""
    n, k = lengths.shape
    cut = np.full(n, k, np.int64)
    for i in range(n):
        for j in range(k):
            if lengths[i, j] > 0 and slopes[i, j] <= path[i]:
                cut[i] = j
                break
    return cut


@compiled
def missing_columns(lengths: Any, lo: Any, hi: Any, present: Any) -> tuple[Any, Any]:
    """The columns windows ``[lo, hi)`` need that ``present`` ``(n, K + 1)`` lacks.

    Per slice: a prefix column (segment index -1, ``present[:, 0]``) when it has used
    segments below ``lo``, then each used segment ``k`` in ``[lo, hi)``
    (``present[:, k + 1]``). Returns ``(col_slice, col_k)`` and marks them in
    ``present``. A column keeps standing for its segment index when the segments
    change (:func:`column_values`), so a model can take the next interval's
    segments in place and only add what they newly use.
    """
    n = lengths.shape[0]
    col_slice = np.empty(lengths.size + n, np.int64)
    col_k = np.empty(lengths.size + n, np.int64)
    c = 0
    for i in range(n):
        for j in range(hi[i]):
            if lengths[i, j] <= 0:
                continue
            if j < lo[i]:
                if not present[i, 0]:
                    col_slice[c] = i
                    col_k[c] = -1
                    present[i, 0] = True
                    c += 1
            elif not present[i, j + 1]:
                col_slice[c] = i
                col_k[c] = j
                present[i, j + 1] = True
                c += 1
    return col_slice[:c].copy(), col_k[:c].copy()


@compiled
def column_values(
    lengths: Any, slopes: Any, lo: Any, col_slice: Any, col_k: Any
) -> tuple[Any, Any]:
    """``(cost, upper)`` of columns ``(col_slice, col_k)``: a segment's slope and length
    (0 when unused), or for a prefix column (``col_k`` -1) the summed length of the
    slice's used segments below ``lo`` and their smallest slope (0 if none)."""
    ncol = col_slice.size
    cost = np.zeros(ncol)
    upper = np.zeros(ncol)
    for c in range(ncol):
        i = col_slice[c]
        j = col_k[c]
        if j >= 0:
            if lengths[i, j] > 0:
                cost[c] = slopes[i, j]
                upper[c] = lengths[i, j]
            continue
        smallest = np.inf
        for t in range(lo[i]):
            if lengths[i, t] > 0:
                upper[c] += lengths[i, t]
                smallest = min(smallest, slopes[i, t])
        if np.isfinite(smallest):
            cost[c] = smallest
    return cost, upper


@compiled
def csc_columns(col_slice: Any, link_start: Any, link_count: Any, links: Any) -> tuple[Any, Any]:
    """CSC ``(indptr, indices)`` (int32) of columns whose slices are ``col_slice``: each
    column has a 1 in every row its slice crosses."""
    ncol = col_slice.size
    indptr = np.zeros(ncol + 1, np.int32)
    for c in range(ncol):
        indptr[c + 1] = indptr[c] + link_count[col_slice[c]]
    indices = np.empty(indptr[ncol], np.int32)
    for c in range(ncol):
        s = col_slice[c]
        for t in range(link_count[s]):
            indices[indptr[c] + t] = links[link_start[s] + t]
    return indptr, indices


@compiled
def crash_basis(
    reduced: Any,
    prices: Any,
    col_slice: Any,
    link_start: Any,
    link_count: Any,
    links: Any,
    passes: int,
) -> tuple[Any, Any]:
    """A basis guessed from last interval's link ``prices`` ``(m,)``.

    ``reduced``: each column's slope less its slice's path price. Each priced
    link takes as its basic variable the nearest column (smallest ``|reduced|``,
    lowest index on ties) among those of the slices crossing it; a column chosen
    by several links goes to the link with the highest price (lowest index on
    ties) and the others choose again among the columns left, for ``passes``
    rounds. Returns ``(basic (ncol,), row_basic (m,))``: the chosen columns, and
    the links whose slack stays basic.
    """
    ncol = reduced.size
    m = prices.size
    basic = np.zeros(ncol, np.bool_)
    row_basic = np.ones(m, np.bool_)
    choice = np.full(m, -1, np.int64)
    owner = np.full(ncol, -1, np.int64)
    for _ in range(passes):
        choice[:] = -1
        best = np.full(m, np.inf)
        for c in range(ncol):  # columns in order: ties keep the lowest index
            if basic[c]:
                continue
            s = col_slice[c]
            gap = abs(reduced[c])
            for t in range(link_count[s]):
                row = links[link_start[s] + t]
                if row_basic[row] and prices[row] > 0 and gap < best[row]:
                    best[row] = gap
                    choice[row] = c
        assigned = False
        for row in range(m):
            c = choice[row]
            if c < 0:
                continue
            other = owner[c]
            if other < 0 or prices[row] > prices[other]:
                owner[c] = row
        for row in range(m):
            c = choice[row]
            if c >= 0 and owner[c] == row:
                basic[c] = True
                row_basic[row] = False
                assigned = True
        owner[:] = -1
        if not assigned:
            break
    return basic, row_basic


@compiled
def proof_failures(
    lengths: Any,
    slopes: Any,
    hi: Any,
    path: Any,
    prefix_len: Any,
    prefix_fill: Any,
    tolerance: float,
) -> tuple[Any, Any]:
    """Where the reduced optimum is not proven optimal for the full LP, per slice:
    ``(bad_prefix, bad_out)``: a prefix not full, or a left-out segment (``>= hi``)
    steeper than the slice's path price (relative ``tolerance``)."""
    n, k = lengths.shape
    bad_pre = np.zeros(n, np.bool_)
    bad_out = np.zeros(n, np.bool_)
    for i in range(n):
        bad_pre[i] = prefix_len[i] > 0 and prefix_fill[i] < prefix_len[i] * (1 - 1e-9) - 1e-12
        limit = path[i] + tolerance * max(1.0, path[i])
        for j in range(hi[i], k):
            if lengths[i, j] > 0 and slopes[i, j] > limit:
                bad_out[i] = True
                break
    return bad_pre, bad_out


@compiled
def widened_windows(
    lo: Any,
    hi: Any,
    cut: Any,
    bad_pre: Any,
    bad_out: Any,
    k: int,
    spread: int,
    neighbour_spread: int,
    link_start: Any,
    link_count: Any,
    links: Any,
    n_links: int,
) -> tuple[Any, Any]:
    """New windows after a failed proof: failing slices are freed (prefix and/or top),
    every slice's window also covers ``spread`` segments around its new ``cut``, or
    ``neighbour_spread`` for slices sharing a link with a failing slice."""
    n = lo.size
    bad_link = np.zeros(n_links, np.bool_)
    for i in range(n):
        if bad_pre[i] or bad_out[i]:
            for t in range(link_count[i]):
                bad_link[links[link_start[i] + t]] = True
    new_lo = np.empty(n, np.int64)
    new_hi = np.empty(n, np.int64)
    for i in range(n):
        width = spread
        for t in range(link_count[i]):
            if bad_link[links[link_start[i] + t]]:
                width = neighbour_spread
        new_lo[i] = min(0 if bad_pre[i] else lo[i], max(cut[i] - width, 0))
        new_hi[i] = max(k if bad_out[i] else hi[i], min(cut[i] + width, k))
    return new_lo, new_hi
