"""Numpy preprocessing: mean scaling, masks and calendar features (no torch here).

The model works in a log space: a value ``x`` (bit/s) of a series with scale ``s``
becomes ``log1p(x / s)``, where ``s`` is the mean of the observed context (and of
the seasonal window, when there is one). So one model serves slices from kbit/s to
tens of Gbit/s, and all-zero series map to 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sliceai.forecast.config import SECONDS_PER_DAY, day_period
from sliceai.forecast.errors import ForecastError

#: Bytes of copied history one model call may hold: with a seasonal window the model
#: reads a day back, which at short intervals is a long row per forecast origin.
HISTORY_COPY_BYTES = 64 << 20

#: Scale (bit/s) used when a context has no positive observation.
SCALE_FLOOR_BPS = 1.0
#: Number of calendar features per time step (see :func:`calendar_features`).
N_CALENDAR = 6
#: Number of per-series scalar features (see :class:`PreparedContext.series_features`).
N_SERIES_FEATURES = 4 + N_CALENDAR
SECONDS_PER_WEEK = 7 * SECONDS_PER_DAY

FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class PreparedContext:
    """Model inputs for a batch of series.

    ``values``: ``(batch, context_length)`` float32, ``log1p(x / scale)``, 0 where missing.
    ``mask``: ``(batch, context_length)`` float32, 1 where observed.
    ``scale``: ``(batch,)`` float64 bit/s.
    ``series_features``: ``(batch, N_SERIES_FEATURES)`` float32: log10 scale, observed
    fraction, calendar flag, log interval and the calendar features of the first
    forecast step.
    ``step_calendar``: ``(batch, horizon, N_CALENDAR)`` float32 for the forecast steps
    (zeros when the start time is unknown).
    ``seasonal``, ``seasonal_mask``: ``(batch, seasonal_window)`` float32, the log values
    one day before ``origin - seasonal_window / 2 .. origin + seasonal_window / 2`` and
    where they are observed (see :func:`seasonal_slice`).
    """

    values: Float32Array
    mask: Float32Array
    scale: FloatArray
    series_features: Float32Array
    step_calendar: Float32Array
    seasonal: Float32Array
    seasonal_mask: Float32Array

    def model_inputs(self) -> tuple[Float32Array, ...]:
        """The arrays :class:`~sliceai.forecast.model.ForecastModel` takes, in its order."""
        return (
            self.values,
            self.mask,
            self.series_features,
            self.step_calendar,
            self.seasonal,
            self.seasonal_mask,
        )


def origins_per_call(rows_per_origin: int, history: int, at_most: int) -> int:
    """Forecast origins per model call (at most ``at_most``) whose copied histories,
    ``rows_per_origin`` rows of ``history`` float64 each, fit :data:`HISTORY_COPY_BYTES`."""
    fit = HISTORY_COPY_BYTES // (8 * max(1, rows_per_origin) * max(1, history))
    return max(1, min(at_most, fit))


def seasonal_slice(context: FloatArray, interval_s: float, seasonal_window: int) -> FloatArray:
    """``(batch, seasonal_window)`` bit/s of ``context`` one day before the forecast origin.

    The origin is the interval after the last one of ``context``; column ``k`` is the
    value at ``origin - day + k - seasonal_window // 2`` (NaN where ``context`` does
    not reach back that far, or where that is not before the origin).
    """
    batch, length = context.shape
    idx = length - day_period(interval_s) - seasonal_window // 2 + np.arange(seasonal_window)
    ok = (idx >= 0) & (idx < length)
    out = np.full((batch, seasonal_window), np.nan)
    out[:, ok] = context[:, idx[ok]]
    return out


def calendar_features(times_s: FloatArray) -> FloatArray:
    """Time of day (two harmonics) and day of week as sin/cos pairs.

    ``times_s``: any shape, epoch seconds (UTC). Returns shape ``times_s.shape + (6,)``.
    """
    t = np.asarray(times_s, dtype=np.float64)
    day = 2.0 * np.pi * np.mod(t, SECONDS_PER_DAY) / SECONDS_PER_DAY
    # 1970-01-01 was a Thursday; shifting by 3 days puts Monday 00:00 at phase 0.
    week = 2.0 * np.pi * np.mod(t + 3 * SECONDS_PER_DAY, SECONDS_PER_WEEK) / SECONDS_PER_WEEK
    return np.stack(
        [np.sin(day), np.cos(day), np.sin(2 * day), np.cos(2 * day), np.sin(week), np.cos(week)],
        axis=-1,
    )


def as_context(context: npt.ArrayLike) -> FloatArray:
    """Check and convert a context to ``(batch, length)`` float64; NaN/inf/negatives -> NaN."""
    try:
        arr = np.array(context, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ForecastError(f"context must be numeric: {exc}") from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ForecastError(f"context must have shape (batch, context_len), got {arr.shape}")
    if arr.shape[0] == 0:
        raise ForecastError("context has an empty batch")
    arr[~np.isfinite(arr) | (arr < 0)] = np.nan
    return arr


def prepare(
    context: FloatArray,
    context_length: int,
    horizon: int,
    interval_s: float,
    start_time: FloatArray | None,
    scale: FloatArray | None = None,
    seasonal_window: int = 0,
    seasonal: FloatArray | None = None,
) -> PreparedContext:
    """Turn raw contexts into model inputs.

    ``context``: ``(batch, length)`` float64 bit/s from :func:`as_context`; the last
    ``context_length`` intervals are used, shorter ones are left-padded as missing.
    ``start_time``: ``(batch,)`` epoch s of the *first* interval of ``context`` (as
    given, before cropping or padding), or None when unknown. ``scale``: ``(batch,)``
    bit/s to use instead of the mean of the observed context (None: that mean).
    ``seasonal_window``: intervals of the seasonal input, taken from ``context`` by
    :func:`seasonal_slice` unless ``seasonal`` ``(batch, seasonal_window)`` bit/s (NaN
    where missing) gives them.
    """
    if not np.isfinite(interval_s) or interval_s <= 0:
        raise ForecastError(f"interval_s must be positive, got {interval_s!r}")
    batch, length = context.shape
    if length >= context_length:
        window = context[:, length - context_length :]
    else:
        window = np.full((batch, context_length), np.nan)
        if length:
            window[:, context_length - length :] = context
    if seasonal is None:
        seasonal = seasonal_slice(context, interval_s, seasonal_window)
    elif seasonal.shape != (batch, seasonal_window):
        raise ForecastError(f"seasonal must have shape ({batch}, {seasonal_window})")
    observed = np.isfinite(window)
    seen_before = np.isfinite(seasonal)
    n_obs = observed.sum(axis=1)
    n_all = n_obs + seen_before.sum(axis=1)
    total = np.where(observed, window, 0.0).sum(axis=1)
    total = total + np.where(seen_before, seasonal, 0.0).sum(axis=1)
    mean = np.divide(total, n_all, out=np.zeros(batch), where=n_all > 0)
    scale = np.maximum(mean if scale is None else scale, SCALE_FLOOR_BPS)
    values = to_log_space(np.where(observed, window, 0.0), scale)
    lagged = to_log_space(np.where(seen_before, seasonal, 0.0), scale)

    if start_time is None:
        has_calendar = np.zeros(batch)
        step_cal = np.zeros((batch, horizon, N_CALENDAR))
        origin_cal = np.zeros((batch, N_CALENDAR))
    else:
        starts = np.broadcast_to(np.asarray(start_time, dtype=np.float64), (batch,))
        if not np.all(np.isfinite(starts)):
            raise ForecastError("start_time must be finite epoch seconds")
        has_calendar = np.ones(batch)
        first_step = starts + length * interval_s
        steps = first_step[:, None] + interval_s * np.arange(horizon)[None, :]
        step_cal = calendar_features(steps)
        origin_cal = calendar_features(first_step)
    series = np.concatenate(
        [
            ((np.log10(scale) - 6.0) / 3.0)[:, None],
            (n_obs / context_length)[:, None],
            has_calendar[:, None],
            np.full((batch, 1), (np.log10(interval_s) - 1.0) / 2.0),
            origin_cal,
        ],
        axis=1,
    )
    return PreparedContext(
        values=values.astype(np.float32),
        mask=observed.astype(np.float32),
        scale=scale,
        series_features=series.astype(np.float32),
        step_calendar=step_cal.astype(np.float32),
        seasonal=lagged.astype(np.float32),
        seasonal_mask=seen_before.astype(np.float32),
    )


def to_log_space(values: FloatArray, scale: FloatArray) -> FloatArray:
    """``log1p(values / scale)`` with ``scale`` broadcast over trailing axes of ``values``."""
    s = scale.reshape(scale.shape + (1,) * (values.ndim - scale.ndim))
    return np.log1p(np.maximum(values, 0.0) / s)
