"""One direction's allocation problem as a separable concave program over segments.

Every term of the objective is a concave piecewise-linear function of one
slice's rate ``x[s]``, so their sum per slice is one concave piecewise-linear
function ``f_s``, and the problem per direction is

    maximise  sum_s f_s(x[s])   subject to   sum_{s crosses l} x[s] <= capacity[l]   (each link l)

``f_s`` is represented by its segments: breakpoints ``0 = b_0 < b_1 < ...``
(the demand quantiles and tail points, the floor, the guarantee target, the
previous rate, the cap) and a decreasing slope on each. Writing
``x[s] = sum_k y[s, k]`` with ``0 <= y[s, k] <= b_{k+1} - b_k`` is exact for a
concave ``f_s`` (the LP fills the steeper segments first), and segments whose
slope is not positive are dropped, which also applies the cap. The result has
one column per useful segment and one row per link: nothing else.

Slope of segment k of slice s (units: per unit of normalised rate):

- ``w_s * P(D_s > x)`` averaged over the segment: expected served traffic,
  priority weight ``w_s = 2 ** (-(priority_level - 1) / 32)``;
- ``+ G_s`` below the guarantee target ``quantile(D_s, 1 - risk_s)`` (guaranteed
  slices only): the soft guarantee, ranked by priority;
- ``+ F_s`` below the floor (the guaranteed throughput quota plus admitted
  grants), ranked by priority above every guarantee;
- ``+ CHURN_COST`` below the previous rate, ``- CHURN_COST`` above it: the L1
  cost of changing a meter;
- ``+ BEST_EFFORT_BONUS`` below the ``1 - risk`` quantile of a slice without
  a guarantee: spare capacity covers it to the risk it accepts;
- ``- RESERVE_COST`` everywhere: the price of capacity held by a meter.

Why a price on reserved capacity: expected served traffic alone is flat above
the demand, so without a price the LP is indifferent to handing a slice far
more than it can use, and with the churn cost it never gives capacity back
(a meter only ever grows). With the price, a slice without a guarantee stops
at its ``1 - risk`` quantile or where ``w_s * P(D_s > x) = RESERVE_COST``,
whichever is higher (the newsvendor / DeepCog trade-off between unserved and
overprovisioned traffic), as long as capacity is spare; guaranteed slices are
still held at their ``1 - risk`` quantile by the much larger tier bonus, and
the churn cost becomes a dead band of ``+-CHURN_COST`` around that point.

The tier bonuses grow additively, not geometrically: it is the marginal value
that decides who gets a contested bit, so a bonus gap larger than the largest
possible slope of everything below it (``w <= 1`` plus twice the churn cost)
already orders the tiers strictly, while keeping coefficients within a few
hundred of each other for any realistic number of priority levels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sliceai.solver import kernels

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

#: Cost per unit of rate changed from the previous plan, relative to a slope-1 unit of
#: expected served traffic: a change must buy at least 2 % more expected traffic.
CHURN_COST = 0.02

#: Price per unit of reserved rate, relative to a slope-1 unit of expected served traffic.
#: Larger than CHURN_COST, so capacity a slice no longer needs is given back.
RESERVE_COST = 0.05

#: Slope bonus below a best-effort slice's ``1 - risk`` quantile: enough to beat the price
#: of capacity and the churn cost, far below every guarantee tier. Spare capacity thus
#: covers each slice up to the risk its policy accepts before the price stops it.
BEST_EFFORT_BONUS = RESERVE_COST + 2 * CHURN_COST

#: Gap between consecutive priority tiers, bigger than any slope below a tier.
TIER_STEP = 1.0 + 1.0 + 2 * CHURN_COST + RESERVE_COST + BEST_EFFORT_BONUS


def priority_weight(priority_level: npt.NDArray[np.int_]) -> FloatArray:
    """Weight of expected served traffic: 1 for priority 1, halving every 32 levels."""
    return np.asarray(2.0 ** (-(np.asarray(priority_level, dtype=np.float64) - 1.0) / 32.0))


def tier_bonuses(
    priority_level: npt.NDArray[np.int_],
    has_floor: npt.NDArray[np.bool_],
    guaranteed: npt.NDArray[np.bool_],
) -> tuple[FloatArray, FloatArray]:
    """Slope bonuses ``(floor_bonus, guarantee_bonus)``, each ``(n_slices,)``.

    Guarantee bonuses rank the distinct priority levels of guaranteed slices:
    ``TIER_STEP * (R - i)`` for the i-th most important of R levels. Floor
    bonuses sit above all of them and are ranked the same way with a gap
    larger than the biggest guarantee bonus plus one tier step.
    """
    level = np.asarray(priority_level)
    g_levels = np.unique(level[guaranteed])
    r = g_levels.size
    g_rank = np.searchsorted(g_levels, level)  # 0 = most important
    guarantee = np.where(guaranteed, TIER_STEP * (r - g_rank), 0.0)
    g_max = TIER_STEP * r
    f_levels = np.unique(level[has_floor])
    rf = f_levels.size
    f_rank = np.searchsorted(f_levels, level)
    gap = g_max + 2 * TIER_STEP
    floor = np.where(has_floor, g_max + TIER_STEP + gap * (rf - f_rank), 0.0)
    return np.asarray(floor, dtype=np.float64), np.asarray(guarantee, dtype=np.float64)


@dataclass(frozen=True)
class Segments:
    """Segments of every slice's objective in one direction, normalised by ``scale``.

    ``lengths`` and ``slopes``: ``(n_slices, K)``, slopes non-increasing along K,
    lengths 0 where a segment is unused (slope <= 0 or empty). ``scale``: bit/s per unit.
    """

    lengths: FloatArray
    slopes: FloatArray
    scale: float

    @property
    def desire(self) -> FloatArray:
        """Rate each slice would take with unlimited capacity, ``(n_slices,)`` normalised."""
        return np.asarray(self.lengths.sum(axis=1))


def build_segments(
    points: FloatArray,
    demand_slopes: FloatArray,
    weight: FloatArray,
    floor: FloatArray,
    floor_bonus: FloatArray,
    target: FloatArray,
    guarantee_bonus: FloatArray,
    cap: FloatArray,
    previous: FloatArray | None,
    scale: float,
) -> Segments:
    """Merge every slice's breakpoints into concave segments (:func:`kernels.merge_segments`).

    ``points``/``demand_slopes``: ``(n_slices, P)`` bit/s and slope after each point
    (from :meth:`DemandForecast.breakpoints`, one direction). ``weight``, bonuses:
    ``(n_slices,)``. ``floor``, ``target``, ``cap`` (inf = none), ``previous``:
    ``(n_slices,)`` bit/s. ``scale``: bit/s per normalised unit.
    """
    lengths, slopes = kernels.merge_segments(
        points,
        demand_slopes,
        weight,
        floor,
        floor_bonus,
        target,
        guarantee_bonus,
        cap,
        floor if previous is None else previous,
        previous is not None,
        scale,
        CHURN_COST,
        RESERVE_COST,
    )
    return Segments(lengths, slopes, scale)
