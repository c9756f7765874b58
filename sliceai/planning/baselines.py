"""The simple forecasters: rolling empirical quantiles, EWMA with a Gaussian band,
seasonal naive. Numpy and SciPy only.

Each reads a bounded window of history before the origin, so its forecast is a
function of that window alone: the replay (many origins at once), the live loop
(one origin per interval) and the evaluation get the same numbers. Missing points
(NaN) are skipped by the rolling quantile and carried forward by the others
(leading gaps as 0). All three forecast the same distribution at every step of the
horizon except seasonal naive, which follows yesterday.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter
from scipy.special import ndtri

from sliceai.planning.forecasters import (
    FloatArray,
    Forecaster,
    IntArray,
    nan_quantiles,
    trailing_windows,
)

#: Intervals of history the rolling quantile reads (and the pool of residuals the
#: seasonal naive forecast draws from).
ROLLING_WINDOW = 300
#: EWMA smoothing factor for the mean and for the variance of the one-step errors.
EWMA_ALPHA = 0.1
#: Intervals the EWMA recursion runs over before each origin (0.9 ** 256 ~ 2e-12 of
#: weight is left on older values).
EWMA_WINDOW = 256
#: Windows of the history held in memory at once (float64 values).
BLOCK_VALUES = 1 << 22

SECONDS_PER_DAY = 86400.0


def _blocks(origins: IntArray, per_origin: int) -> list[IntArray]:
    size = max(1, BLOCK_VALUES // max(per_origin, 1))
    return [origins[i : i + size] for i in range(0, len(origins), size)]


def forward_fill(rows: FloatArray) -> FloatArray:
    """NaN replaced by the last value before it in the row (0 before the first one)."""
    ok = np.isfinite(rows)
    idx = np.where(ok, np.arange(rows.shape[-1]), -1)
    np.maximum.accumulate(idx, axis=-1, out=idx)
    filled = np.take_along_axis(rows, np.maximum(idx, 0), axis=-1)
    return np.where(idx >= 0, filled, 0.0)


class RollingQuantileForecaster(Forecaster):
    """Empirical quantiles of the last ``window`` observed intervals (0 with none)."""

    name = "rolling-quantile"

    def __init__(self, window: int = ROLLING_WINDOW) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1 interval, got {window}")
        self.window = window

    def history_length(self, interval_s: float) -> int:
        return self.window

    def quantiles_at(
        self,
        history: FloatArray,
        origins: IntArray,
        levels: FloatArray,
        start_time: float,
        interval_s: float,
        horizon: int = 1,
    ) -> FloatArray:
        lv = np.asarray(levels, dtype=np.float64)
        parts = [
            nan_quantiles(trailing_windows(history, some, self.window), lv)
            for some in _blocks(np.asarray(origins), history.shape[0] * self.window)
        ]
        q = np.concatenate(parts) if parts else np.zeros((0, history.shape[0], len(lv)))
        return np.repeat(q[:, :, None, :], horizon, axis=2)


class EwmaForecaster(Forecaster):
    """EWMA mean and exponentially weighted variance of its one-step errors, run over
    the last ``window`` intervals; a Gaussian ``N(mean, var)`` clipped at 0 for every step."""

    name = "ewma"

    def __init__(self, alpha: float = EWMA_ALPHA, window: int = EWMA_WINDOW) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        if window < 1:
            raise ValueError(f"window must be at least 1 interval, got {window}")
        self.alpha = alpha
        self.window = window

    def history_length(self, interval_s: float) -> int:
        return self.window

    def moments(self, history: FloatArray, origins: IntArray) -> tuple[FloatArray, FloatArray]:
        """EWMA mean and standard deviation at each origin, ``(m, n_series)`` each."""
        a = self.alpha
        means, stds = [], []
        for some in _blocks(np.asarray(origins), history.shape[0] * self.window):
            w = trailing_windows(history, some, self.window)  # (m, n, W)
            # Leading NaN (before the history starts) are skipped: the recursion starts at
            # the first observed value, as it would on a history that begins there.
            x = forward_fill(w)
            first = np.argmax(np.isfinite(w), axis=-1)[..., None]
            seen = np.arange(w.shape[-1]) >= first
            x0 = np.take_along_axis(x, first, axis=-1)
            x = np.where(seen, x, x0)
            # mean_{i+1} = (1 - a) mean_i + a x_i with mean_0 = x_0.
            mean_after, _ = lfilter([a], [1.0, -(1.0 - a)], x, axis=-1, zi=(1.0 - a) * x0)
            mean_before = np.concatenate([x0, mean_after[..., :-1]], axis=-1)
            err2 = (x - mean_before) ** 2
            # var_{i+1} = (1 - a) (var_i + a err_i^2) with var_0 = 0.
            var, _ = lfilter(
                [(1.0 - a) * a], [1.0, -(1.0 - a)], err2, axis=-1, zi=np.zeros_like(x0)
            )
            means.append(mean_after[..., -1])
            stds.append(np.sqrt(np.maximum(var[..., -1], 0.0)))
        if not means:
            empty = np.zeros((0, history.shape[0]))
            return empty, empty
        return np.concatenate(means), np.concatenate(stds)

    def quantiles_at(
        self,
        history: FloatArray,
        origins: IntArray,
        levels: FloatArray,
        start_time: float,
        interval_s: float,
        horizon: int = 1,
    ) -> FloatArray:
        mean, std = self.moments(history, origins)
        z = ndtri(np.asarray(levels, dtype=np.float64))
        q = np.maximum(mean[..., None] + std[..., None] * z, 0.0)  # (m, n, Q)
        return np.repeat(q[:, :, None, :], horizon, axis=2)


class SeasonalNaiveForecaster(Forecaster):
    """The value one day earlier plus the quantiles of the last ``window`` day-on-day
    differences; with less than a day plus ``window`` of history, the last value plus
    the last ``window`` one-step differences."""

    name = "seasonal-naive"

    def __init__(self, window: int = ROLLING_WINDOW) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1 interval, got {window}")
        self.window = window

    def period(self, interval_s: float, available: int) -> int:
        """One day in intervals when ``available`` history covers a day plus the window."""
        day = max(1, round(SECONDS_PER_DAY / interval_s))
        return day if available >= day + self.window else 1

    def history_length(self, interval_s: float) -> int:
        return max(1, round(SECONDS_PER_DAY / interval_s)) + self.window

    def quantiles_at(
        self,
        history: FloatArray,
        origins: IntArray,
        levels: FloatArray,
        start_time: float,
        interval_s: float,
        horizon: int = 1,
    ) -> FloatArray:
        lv = np.asarray(levels, dtype=np.float64)
        org = np.asarray(origins, dtype=np.int64)
        x = forward_fill(np.asarray(history, dtype=np.float64))
        n = x.shape[0]
        out = np.zeros((len(org), n, horizon, len(lv)))
        for k, o in enumerate(org.tolist()):
            period = self.period(interval_s, o)
            past = x[:, :o]
            diffs = past[:, period:] - past[:, :-period] if o > period else np.zeros((n, 1))
            pool = diffs[:, -self.window :]
            spread = np.quantile(pool, lv, axis=1).T  # (n, Q)
            steps = np.arange(horizon)
            lag = o - period + (steps % period)  # yesterday's same time, repeated past a period
            point = past[:, np.clip(lag, 0, max(o - 1, 0))] if o else np.zeros((n, horizon))
            out[k] = np.maximum(point[:, :, None] + spread[:, None, :], 0.0)
        return out
