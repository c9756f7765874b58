"""Reference forecasters the model must beat (numpy only).

Each takes one series' full history and a set of forecast origins and returns
an ensemble ``(n_origins, horizon, n_members)`` in bit/s; quantiles are read off
the ensemble (EWMA's are exact Gaussian quantiles). Missing points are
forward-filled first (leading gaps become 0), since none of these methods
has a notion of missing data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import ndtri

FloatArray = npt.NDArray[np.float64]

#: Window (intervals) of the rolling empirical quantile and the residual pools.
WINDOW = 256
#: EWMA smoothing factor for the mean and the variance.
EWMA_ALPHA = 0.1
#: Members drawn for the Gaussian EWMA ensemble.
EWMA_MEMBERS = 100


def forward_fill(values: FloatArray) -> FloatArray:
    """NaN replaced by the last observed value (0 before the first one)."""
    x = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(x)
    idx = np.where(ok, np.arange(len(x)), -1)
    np.maximum.accumulate(idx, out=idx)
    return np.where(idx >= 0, x[np.maximum(idx, 0)], 0.0)


@dataclass(frozen=True)
class BaselineForecast:
    """``ensemble``: ``(n_origins, horizon, n_members)`` bit/s, >= 0."""

    ensemble: FloatArray

    def quantiles(self, levels: npt.ArrayLike) -> FloatArray:
        """``(n_origins, horizon, Q)`` empirical quantiles of the ensemble."""
        q = np.quantile(self.ensemble, np.asarray(levels, dtype=np.float64), axis=-1)
        out: FloatArray = np.moveaxis(q, 0, -1)
        return out


@dataclass(frozen=True)
class GaussianForecast(BaselineForecast):
    """A Gaussian ``N(mean, std)`` clipped at 0; ``mean``, ``std``: ``(n_origins,)``."""

    mean: FloatArray
    std: FloatArray

    def quantiles(self, levels: npt.ArrayLike) -> FloatArray:
        z = ndtri(np.asarray(levels, dtype=np.float64))
        horizon = self.ensemble.shape[1]
        q = np.maximum(self.mean[:, None] + self.std[:, None] * z[None, :], 0.0)
        out: FloatArray = np.repeat(q[:, None, :], horizon, axis=1)
        return out


def seasonal_period(interval_s: float, history: int) -> int:
    """One day in intervals when ``history`` holds a day plus a residual window, else 1."""
    day = round(86400.0 / interval_s)
    return day if history >= day + WINDOW else 1


def seasonal_naive(
    values: FloatArray, origins: npt.NDArray[np.int64], horizon: int, period: int
) -> BaselineForecast:
    """Value one ``period`` earlier plus the seasonal differences of the last WINDOW points."""
    x = forward_fill(values)
    diffs = np.zeros_like(x)
    diffs[period:] = x[period:] - x[:-period]
    steps = np.arange(horizon)
    members = []
    for t in origins:
        point = x[t + steps - period] if period >= horizon else _repeat_lag(x, t, horizon, period)
        pool = diffs[max(period, t - WINDOW) : t]
        if pool.size == 0:
            pool = np.zeros(1)
        members.append(np.maximum(point[:, None] + pool[None, :], 0.0))
    width = max(m.shape[1] for m in members)
    ens = np.stack([_pad_members(m, width) for m in members])
    return BaselineForecast(ens)


def _repeat_lag(x: FloatArray, t: int, horizon: int, period: int) -> FloatArray:
    """Seasonal naive for steps beyond one period: repeat the last period."""
    last = x[t - period : t]
    return np.resize(last, horizon)


def _pad_members(m: FloatArray, width: int) -> FloatArray:
    if m.shape[1] == width:
        return m
    idx = np.arange(width) % m.shape[1]
    padded: FloatArray = m[:, idx]
    return padded


def ewma_gaussian(
    values: FloatArray, origins: npt.NDArray[np.int64], horizon: int, seed: int = 0
) -> GaussianForecast:
    """EWMA mean and EW variance of the one-step errors; a flat Gaussian band over the horizon."""
    x = forward_fill(values)
    mean = np.empty(len(x) + 1)
    var = np.empty(len(x) + 1)
    mean[0], var[0] = x[0] if len(x) else 0.0, 0.0
    a = EWMA_ALPHA
    for i, v in enumerate(x):
        err = v - mean[i]
        mean[i + 1] = mean[i] + a * err
        var[i + 1] = (1 - a) * (var[i] + a * err * err)
    m, s = mean[origins], np.sqrt(var[origins])
    rng = np.random.default_rng(seed)
    draws = m[:, None, None] + s[:, None, None] * rng.standard_normal(
        (len(origins), horizon, EWMA_MEMBERS)
    )
    return GaussianForecast(np.maximum(draws, 0.0), m, s)


def rolling_quantile(
    values: FloatArray, origins: npt.NDArray[np.int64], horizon: int
) -> BaselineForecast:
    """The last :data:`WINDOW` observations as the ensemble, the same for every step."""
    x = forward_fill(values)
    padded = np.concatenate([np.full(WINDOW, x[0] if len(x) else 0.0), x])
    windows = sliding_window_view(padded, WINDOW)  # row t = x[t - WINDOW : t]
    ens = windows[origins]
    return BaselineForecast(np.repeat(ens[:, None, :], horizon, axis=1))


BASELINES = ("seasonal-naive", "ewma", "rolling-quantile")
