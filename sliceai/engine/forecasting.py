"""Demand forecasters the live loop can use, behind one small protocol.

The loop asks for quantiles of next-interval demand of every series (a series
is one slice in one direction: row ``2 * slice + direction``). The generative
model (:class:`sliceai.forecast.ForecastPipeline`) is wrapped by
:class:`PipelineForecaster`; :class:`EmpiricalForecaster` (rolling empirical
quantiles of the recent history) is the fail-safe when the model fails, and a
handy fake in tests.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

DEFAULT_CONTEXT = 256
"""Intervals of history handed to a model whose config does not say."""

MAX_HISTORY = 4096
"""Most intervals of history the live loop keeps for a forecaster: a day back (the
model's seasonal window) is within reach from 30 s intervals up, the clocks at which
the bundled model reads it (``seasonal_min_interval_s``); a model that wants it at a
faster clock gets its context only, as in training windows without yesterday."""


def history_needed(forecaster: object, interval_s: float) -> int:
    """Intervals of history ``forecaster`` reads at ``interval_s`` (its
    ``history_length``, when it has one); 0 when it does not say."""
    wanted = getattr(forecaster, "history_length", None)
    return int(wanted(interval_s)) if callable(wanted) else 0


class Forecaster(Protocol):
    """Next-interval demand quantiles."""

    name: str

    def quantiles(
        self,
        history: npt.NDArray[np.float64],
        levels: npt.NDArray[np.float64],
        start_time: float,
        interval_s: float,
    ) -> npt.NDArray[np.float64]:
        """Quantiles of the next interval's demand.

        ``history``: ``(n_series, T)`` bit/s, oldest first, NaN where missing.
        ``levels``: ``(Q,)`` increasing, in (0, 1).
        ``start_time``: epoch s of the first history interval.
        Returns ``(n_series, Q)`` float64 bit/s, finite and >= 0, non-decreasing along Q.
        Raises anything on failure; the loop then falls back.
        """
        ...


class EmpiricalForecaster:
    """Rolling empirical quantiles of the last ``window`` intervals of each series.

    A series with no measurement in the window forecasts 0 bit/s (the solver
    still gives the slice its guaranteed floor).
    """

    name = "rolling-quantile"

    def __init__(self, window: int = 64) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window

    def quantiles(
        self,
        history: npt.NDArray[np.float64],
        levels: npt.NDArray[np.float64],
        start_time: float,
        interval_s: float,
    ) -> npt.NDArray[np.float64]:
        recent = np.asarray(history, dtype=np.float64)[:, -self.window :]
        n_series = recent.shape[0]
        out = np.zeros((n_series, len(levels)))
        if recent.shape[1] == 0:
            return out
        count = (~np.isnan(recent)).sum(axis=1)
        some = count > 0
        if some.any():
            out[some] = nan_quantiles(recent[some], count[some], np.asarray(levels))
        return np.maximum(out, 0.0)


def nan_quantiles(
    rows: npt.NDArray[np.float64], count: npt.NDArray[np.int_], levels: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """``np.nanquantile(rows, levels, axis=1).T`` (linear method) for rows with
    ``count`` >= 1 values, without numpy's per-row loop when NaNs are present.

    ``rows`` ``(n, T)``; ``count`` ``(n,)`` non-NaN values per row; returns ``(n, Q)``.
    """
    ordered = np.sort(rows, axis=1)  # NaN sort last
    pos = levels[None, :] * (count[:, None] - 1)
    below = np.floor(pos).astype(np.intp)
    above = np.minimum(below + 1, count[:, None] - 1)
    frac = pos - below
    lo = np.take_along_axis(ordered, below, axis=1)
    hi = np.take_along_axis(ordered, above, axis=1)
    return np.asarray(lo + (hi - lo) * frac)


class PipelineForecaster:
    """The generative model: ``ForecastPipeline.quantiles`` at horizon 1.

    ``pipeline`` is a :class:`sliceai.forecast.ForecastPipeline` (typed loosely so
    this module does not import torch).
    """

    name = "model"

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    def history_length(self, interval_s: float) -> int:
        """Intervals the model reads: its context and, when the loop keeps that much,
        a window around the same time one day earlier."""
        config = getattr(self.pipeline, "config", None)
        if config is None or not hasattr(config, "history_length"):
            return DEFAULT_CONTEXT
        needed = int(config.history_length(interval_s))
        return needed if needed <= MAX_HISTORY else int(config.context_length)

    def context(self, series: npt.NDArray[np.float64], interval_s: float) -> int:
        """How many of the last intervals of ``series`` to hand the model."""
        return min(int(series.shape[1]), self.history_length(interval_s))

    @classmethod
    def load(cls, path: str | None = None, device: str = "auto") -> PipelineForecaster:
        """Load a checkpoint (None = the bundled default); raises on a bad checkpoint."""
        from sliceai.forecast.pipeline import ForecastPipeline

        return cls(ForecastPipeline.load(path, device=device))

    def quantiles(
        self,
        history: npt.NDArray[np.float64],
        levels: npt.NDArray[np.float64],
        start_time: float,
        interval_s: float,
    ) -> npt.NDArray[np.float64]:
        ctx = history[:, history.shape[1] - self.context(history, interval_s) :]
        first = start_time + interval_s * (history.shape[1] - ctx.shape[1])
        q = self.pipeline.quantiles(ctx, 1, levels, start_time=first, interval_s=interval_s)
        out = np.asarray(q, dtype=np.float64)[:, 0, :]
        if out.shape != (history.shape[0], len(levels)) or not np.isfinite(out).all():
            raise ValueError(f"model returned {out.shape} with non-finite values or wrong shape")
        return np.maximum.accumulate(np.maximum(out, 0.0), axis=1)
