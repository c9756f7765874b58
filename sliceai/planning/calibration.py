"""Online calibration of forecast quantiles: quantile tracking on the log of the forecast.

A pool of forecasters weighted by pinball loss (:mod:`sliceai.planning.pool`) picks the
member whose quantiles score best, which is not the same as quantiles that are
calibrated: on traffic no member knows, the pooled 0.975 quantile may be exceeded in 4 %
of intervals instead of 2.5 %. :class:`QuantileTracker` closes that loop on outcomes.
Per series, quantile level ``tau`` and forecast step ``h`` it keeps an offset ``theta``
(natural-log units, 0 at first) and issues ``q * exp(theta)`` for a forecast ``q > 0``;
when the target ``y`` of that forecast is seen::

    theta <- clip(theta + step * w * (1{y > q * exp(theta)} - (1 - tau)), -LIMIT, LIMIT)

This is quantile tracking, the proportional part of conformal PID control (Angelopoulos,
Candes and Tibshirani 2023), applied to ``log q``, so one ``step`` serves slices of any
size. The weight ``w = min(1, q / m)``, ``m`` being the running mean of the pooled ``q``
at that level (memory :data:`SCALE_MEMORY` forecasts), keeps forecasts of nearly nothing
from steering the offset: a slice idle all night is forecast close to 0 and demands 0,
a "hit" at every level, and unweighted those hits would pull every offset down to the
clip by morning (the first study on dev traces lost a third of the CRPS to it).

Guarantee: for any sequence of forecasts and targets, if ``theta`` is never clipped, the
weighted share of misses (``y`` above the issued quantile) over ``T`` updates of one
(series, level, step) obeys::

    | sum w (miss - (1 - tau)) / sum w |  =  | theta_T - theta_0 | / (step * sum w)
                                          <=  LIMIT / (step * sum w)

(sum the updates: each adds ``step * w * (miss - (1 - tau))``). So the long-run miss
rate, intervals counted by the size of their forecast, is ``1 - tau`` on any traffic
whose level the clip can reach (``exp(LIMIT)`` times the forecast); beyond that the offset
stays at the clip and the bound no longer holds. The bound counts the quantile as issued
before the pool sorts the levels (a rearrangement that only acts where two levels'
offsets cross) and assumes each forecast is scored before the next one of the same
(level, step) is issued, as the live loop and the replay do.
"""

from __future__ import annotations

import numpy as np

from sliceai.planning.forecasters import FloatArray

#: Offset change per scored forecast, times (miss - (1 - tau)) (chosen on dev traces:
#: research/planning/NOTES.md, "Calibrating the pooled quantiles").
STEP = 0.01
#: Largest offset either way: the issued quantile stays within exp(+-LIMIT) of the pool's.
LIMIT = 1.5
#: Forecasts the running mean of a level's pooled quantile remembers (for the weight).
SCALE_MEMORY = 500.0


class QuantileTracker:
    """Offsets per (level, step) of ``(n_series,)`` (module docstring)."""

    def __init__(self, step: float = STEP, limit: float = LIMIT) -> None:
        if not (step >= 0 and limit > 0):
            raise ValueError(f"need step >= 0 and limit > 0, got {step}, {limit}")
        self.step = step
        self.limit = limit
        self.offset: dict[tuple[float, int], FloatArray] = {}
        self.scale: dict[tuple[float, int], FloatArray] = {}

    def reset(self) -> None:
        self.offset = {}
        self.scale = {}

    @staticmethod
    def weight(size: FloatArray, scale: FloatArray) -> FloatArray:
        """Each update's weight: the forecast ``size`` over its running mean ``scale``, at
        most 1."""
        ratio = np.divide(size, scale, out=np.zeros_like(size), where=scale > 0)
        return np.asarray(np.minimum(ratio, 1.0))

    def state(self) -> tuple[dict[tuple[float, int], FloatArray], ...]:
        """What was learnt, for :meth:`load_state` (copies of the dicts)."""
        return dict(self.offset), dict(self.scale)

    def load_state(self, state: tuple[dict[tuple[float, int], FloatArray], ...]) -> None:
        self.offset, self.scale = dict(state[0]), dict(state[1])

    def offsets(self, n_series: int, levels: FloatArray, horizon: int) -> FloatArray:
        """``(n_series, horizon, Q)`` offsets (0 where a level has not been scored)."""
        return np.stack([self._step_offsets(n_series, levels, h) for h in range(horizon)], 1)

    def _step_offsets(self, n_series: int, levels: FloatArray, h: int) -> FloatArray:
        """Step ``h``'s offsets ``(n_series, Q)``."""
        out = np.zeros((n_series, len(levels)))
        for j, level in enumerate(levels.tolist()):
            theta = self.offset.get((round(level, 9), h))
            if theta is not None and theta.shape == (n_series,):
                out[:, j] = theta
        return out

    def apply(self, quantiles: FloatArray, levels: FloatArray) -> FloatArray:
        """``quantiles`` ``(n, H, Q)`` scaled by their offsets where positive, sorted along
        the levels."""
        if self.step == 0 or not self.offset:
            return quantiles
        n, horizon, _ = quantiles.shape
        scaled = quantiles * np.exp(self.offsets(n, levels, horizon))
        return np.sort(np.where(quantiles > 0, scaled, quantiles), axis=-1)

    def update(self, pooled: FloatArray, levels: FloatArray, h: int, actual: FloatArray) -> None:
        """Score step ``h``'s pooled quantiles ``(n, Q)`` (before offsets) against
        ``actual`` ``(n,)``; series without a finite target or forecast keep their offset."""
        if self.step == 0:
            return
        n = len(actual)
        theta = self._step_offsets(n, levels, h)  # (n, Q)
        issued = np.where(pooled > 0, pooled * np.exp(theta), pooled)
        seen = np.isfinite(actual)[:, None] & np.isfinite(pooled)
        with np.errstate(invalid="ignore"):
            miss = (actual[:, None] > issued).astype(np.float64)
        size = np.where(seen, np.maximum(pooled, 0.0), 0.0)
        scale = np.empty_like(size)
        for j, level in enumerate(levels.tolist()):
            old = self.scale.get((round(level, 9), h))
            old = size[:, j] if old is None or old.shape != (n,) else old
            scale[:, j] = np.where(seen[:, j], old + (size[:, j] - old) / SCALE_MEMORY, old)
        change = self.step * self.weight(size, scale) * (miss - (1.0 - levels))
        new = np.where(seen, np.clip(theta + change, -self.limit, self.limit), theta)
        for j, level in enumerate(levels.tolist()):
            self.offset[(round(level, 9), h)] = new[:, j]
            self.scale[(round(level, 9), h)] = scale[:, j]
