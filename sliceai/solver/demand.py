"""Predictive demand distributions the solver allocates against.

A :class:`DemandForecast` holds, for every slice of a policy (in policy order)
and both directions (index 0 DL, 1 UL), the quantiles of next-interval demand
in bit/s at a shared set of levels. Between the given quantiles the quantile
function is linear (so the CDF is linear too); below the lowest level all the
remaining mass sits at the lowest quantile; above the highest level the tail
is exponential with the scale fitted to the two highest quantiles. That model
gives every quantity the solver needs in closed form: any quantile (the
guarantee level ``1 - risk`` is usually beyond the forecast's levels), the
survival function ``P(D > x)`` that is the slope of expected served traffic,
and the expected shortfall ``E[(D - x)+]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from sliceai.policy import Policy

FloatArray = npt.NDArray[np.float64]

#: Levels used by :meth:`DemandForecast.from_samples` unless told otherwise.
DEFAULT_LEVELS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)

#: Survival ratios at which the exponential tail gets LP breakpoints: the
#: tail is cut where P(D > x) has fallen to (1 - top level) * 2**-TAIL_HALVINGS.
TAIL_HALVINGS = 3


class SolverError(ValueError):
    """Malformed solver input: bad demand, unknown slice, wrong shape. Shortage never raises it."""


def _as_float(name: str, values: object) -> FloatArray:
    try:
        arr = np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SolverError(f"{name}: not numeric ({exc})") from None
    return arr


@dataclass(frozen=True, eq=False)
class DemandForecast:
    """Quantiles of next-interval demand per slice and direction.

    ``levels``: ``(Q,)`` strictly increasing, each in (0, 1).
    ``quantiles``: ``(n_slices, 2, Q)`` bit/s, finite, >= 0, non-decreasing along Q.
    Build with :meth:`from_quantiles`, :meth:`from_samples`, :meth:`point` or
    :meth:`from_mapping`; each validates and raises :class:`SolverError`.
    """

    levels: FloatArray
    quantiles: FloatArray

    @classmethod
    def from_quantiles(cls, levels: object, values: object) -> DemandForecast:
        """``levels`` ``(Q,)`` in (0, 1), ``values`` ``(n_slices, 2, Q)`` bit/s."""
        lv = _as_float("levels", levels)
        q = _as_float("quantiles", values)
        if lv.ndim != 1 or lv.size == 0:
            raise SolverError(f"levels must be a non-empty 1-D array, got shape {lv.shape}")
        if not np.all(np.isfinite(lv)) or np.any(lv <= 0) or np.any(lv >= 1):
            raise SolverError(f"quantile levels must lie strictly inside (0, 1), got {lv.tolist()}")
        if np.any(np.diff(lv) <= 0):
            raise SolverError(f"quantile levels must be strictly increasing, got {lv.tolist()}")
        if q.ndim != 3 or q.shape[1] != 2 or q.shape[2] != lv.size:
            raise SolverError(
                f"quantiles must have shape (n_slices, 2, {lv.size}) (slice, DL/UL, level), "
                f"got {q.shape}"
            )
        _check_values("quantiles", q)
        bad = np.argwhere(np.diff(q, axis=2) < 0)
        if bad.size:
            s, d, k = bad[0]
            raise SolverError(
                f"quantiles of slice #{s} {'DL' if d == 0 else 'UL'} are not monotone: "
                f"level {lv[k]:g} -> {q[s, d, k]:g} bit/s but level {lv[k + 1]:g} -> "
                f"{q[s, d, k + 1]:g} bit/s"
            )
        lv.setflags(write=False)
        q.setflags(write=False)
        return cls(lv, q)

    @classmethod
    def from_samples(
        cls, samples: object, levels: tuple[float, ...] = DEFAULT_LEVELS
    ) -> DemandForecast:
        """Empirical quantiles of ``samples`` ``(n_slices, 2, n_samples >= 2)`` bit/s."""
        x = _as_float("samples", samples)
        if x.ndim != 3 or x.shape[1] != 2 or x.shape[2] < 2:
            raise SolverError(
                f"samples must have shape (n_slices, 2, n_samples >= 2), got {x.shape}"
            )
        _check_values("samples", x)
        lv = _as_float("levels", levels)
        if lv.ndim != 1 or np.any(lv <= 0) or np.any(lv >= 1):
            raise SolverError(f"quantile levels must lie strictly inside (0, 1), got {lv.tolist()}")
        q = np.quantile(x, lv, axis=2).transpose(1, 2, 0)
        return cls.from_quantiles(lv, np.maximum.accumulate(q, axis=2))

    @classmethod
    def point(cls, values: object) -> DemandForecast:
        """A certain demand: ``values`` ``(n_slices, 2)`` bit/s (one level, 0.5)."""
        v = _as_float("point demand", values)
        if v.ndim != 2 or v.shape[1] != 2:
            raise SolverError(f"point demand must have shape (n_slices, 2), got {v.shape}")
        return cls.from_quantiles((0.5,), v[:, :, None])

    @classmethod
    def from_mapping(
        cls,
        policy: Policy,
        demand: Mapping[str, object],
        levels: tuple[float, ...] | None = None,
    ) -> DemandForecast:
        """Demand by slice name, in any order; slices left out get zero demand.

        Each value is ``(2,)`` point demand (DL, UL) when ``levels`` is None,
        else ``(2, Q)`` quantiles at ``levels``. Unknown names raise :class:`SolverError`.
        """
        unknown = sorted(set(demand) - set(policy.slice_names))
        if unknown:
            raise SolverError(
                f"demand for unknown slice(s) {', '.join(unknown)}; "
                f"policy {policy.name} has {', '.join(policy.slice_names)}"
            )
        n = len(policy.slices)
        if levels is None:
            out = np.zeros((n, 2))
            for name, value in demand.items():
                v = _as_float(f"demand[{name}]", value)
                if v.shape != (2,):
                    raise SolverError(f"demand[{name}] must be (DL, UL) bit/s, got shape {v.shape}")
                out[policy.slice_index(name)] = v
            return cls.point(out)
        qs = np.zeros((n, 2, len(levels)))
        for name, value in demand.items():
            v = _as_float(f"demand[{name}]", value)
            if v.shape != (2, len(levels)):
                raise SolverError(
                    f"demand[{name}] must have shape (2, {len(levels)}), got {v.shape}"
                )
            qs[policy.slice_index(name)] = v
        return cls.from_quantiles(levels, qs)

    @property
    def n_slices(self) -> int:
        return int(self.quantiles.shape[0])

    def check_policy(self, policy: Policy) -> None:
        """Raise :class:`SolverError` unless this forecast has one row per policy slice."""
        if self.n_slices != len(policy.slices):
            raise SolverError(
                f"demand has {self.n_slices} slices but policy {policy.name} has "
                f"{len(policy.slices)} ({', '.join(policy.slice_names)})"
            )

    def tail_scale(self) -> FloatArray:
        """Scale (bit/s) of the exponential tail above the top level, ``(n_slices, 2)``."""
        lv, q = self.levels, self.quantiles
        if lv.size < 2:
            return np.zeros(q.shape[:2])
        return np.asarray((q[:, :, -1] - q[:, :, -2]) / np.log((1 - lv[-2]) / (1 - lv[-1])))

    def quantile(self, level: FloatArray | float) -> FloatArray:
        """Quantile at ``level`` (scalar, ``(n_slices,)`` or ``(n_slices, 2)``) for DL and UL
        -> ``(n_slices, 2)``; ``inf`` at a level of 1 or more (all the demand there may be)."""
        lv, q = self.levels, self.quantiles
        p = np.asarray(level, dtype=np.float64)
        p = np.broadcast_to(p[:, None] if p.ndim == 1 else p, (self.n_slices, 2))
        out = np.empty(q.shape[:2])
        for d in range(2):
            out[:, d] = _interp_rows(p[:, d], lv, q[:, d, :])
        beyond = p > lv[-1]
        if np.any(beyond):
            beta = self.tail_scale()
            with np.errstate(divide="ignore", invalid="ignore"):
                extra = np.log((1 - lv[-1]) / np.maximum(1 - p[beyond], 0.0))
                out[beyond] = q[:, :, -1][beyond] + beta[beyond] * extra
            out[p >= 1.0] = np.inf
        return out

    def breakpoints(self) -> tuple[FloatArray, FloatArray]:
        """Demand breakpoints and the slope of expected served traffic after each.

        Returns ``(points, slopes)``, both ``(n_slices, 2, Q + TAIL_HALVINGS)``:
        the Q quantiles followed by the tail points where ``P(D > x)`` halves,
        and ``slopes[..., j]`` = mean of ``P(D > x)`` between point ``j`` and
        point ``j + 1`` (0 after the last point). Below the first point the slope is 1.
        Expected served traffic ``E[min(D, x)]`` is exactly linear between points
        except inside the tail, where the chord is used.
        """
        lv, q = self.levels, self.quantiles
        top = 1.0 - lv[-1]
        halvings = np.arange(1, TAIL_HALVINGS + 1, dtype=np.float64)
        tail = q[:, :, -1:] + self.tail_scale()[:, :, None] * (halvings * np.log(2.0))
        points = np.concatenate([q, tail], axis=2)
        survival = 1.0 - lv
        inner = 0.5 * (survival[:-1] + survival[1:])  # linear CDF between quantiles
        tail_s = top * 0.5 ** np.concatenate([[0.0], halvings])
        tail_slopes = (tail_s[:-1] - tail_s[1:]) / np.log(2.0)  # exponential pieces
        slopes = np.concatenate([inner, tail_slopes, [0.0]])
        return points, np.broadcast_to(slopes, points.shape)

    def expected_shortfall(self, allocation: FloatArray) -> FloatArray:
        """``E[(D - x)+]`` in bit/s for allocation ``(n_slices, 2)`` -> ``(n_slices, 2)``."""
        x = np.asarray(allocation, dtype=np.float64)
        lv, q = self.levels, self.quantiles
        # Mass lv[0] at q[0], linear CDF between quantiles, exponential tail above.
        left = np.concatenate([q[:, :, :1], q[:, :, :-1]], axis=2)
        s_left = np.concatenate([[1.0], 1.0 - lv[:-1]])
        s_right = 1.0 - lv
        width = q - left
        s_left_b = np.broadcast_to(s_left, q.shape)
        s_right_b = np.broadcast_to(s_right, q.shape)
        # Integral of survival over [max(x, left), right] inside each quantile piece.
        lo = np.clip(x[:, :, None], left, q)
        frac_lo = np.divide(lo - left, width, out=np.zeros_like(width), where=width > 0)
        s_lo = s_left_b + (s_right_b - s_left_b) * frac_lo
        pieces = 0.5 * (s_lo + s_right_b) * (q - lo)
        below = np.maximum(q[:, :, 0] - x, 0.0)  # survival 1 below the first quantile
        beta = self.tail_scale()
        over = np.maximum(x - q[:, :, -1], 0.0)
        tail = (
            (1.0 - lv[-1])
            * beta
            * np.exp(-np.divide(over, beta, out=np.full_like(beta, np.inf), where=beta > 0))
        )
        return np.asarray(below + pieces.sum(axis=2) + tail)


def _check_values(name: str, x: FloatArray) -> None:
    if np.any(np.isnan(x)):
        idx = tuple(int(i) for i in np.argwhere(np.isnan(x))[0])
        raise SolverError(f"{name} contain NaN (first at index {idx}); fill gaps before solving")
    if np.any(~np.isfinite(x)):
        raise SolverError(f"{name} contain infinite values")
    if np.any(x < 0):
        idx = tuple(int(i) for i in np.argwhere(x < 0)[0])
        raise SolverError(
            f"{name} contain negative demand (first at index {idx}: {x[idx]:g} bit/s)"
        )


def _interp_rows(p: FloatArray, levels: FloatArray, rows: FloatArray) -> FloatArray:
    """Piecewise-linear interpolation of each row of ``rows`` ``(n, Q)`` at ``p`` ``(n,)``."""
    if levels.size == 1:
        return rows[:, 0].copy()
    k = np.clip(np.searchsorted(levels, p) - 1, 0, levels.size - 2)
    lo, hi = levels[k], levels[k + 1]
    t = np.clip((p - lo) / (hi - lo), 0.0, 1.0)
    idx = np.arange(rows.shape[0])
    return np.asarray(rows[idx, k] + t * (rows[idx, k + 1] - rows[idx, k]))
