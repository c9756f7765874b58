"""Training windows cut from traces (numpy only).

A :class:`Series` is one (slice, direction) column of a trace. Windows are
(context, target) pairs cut at random origins, with augmentations that teach
the model the robustness cases: short histories, missing points, unknown
calendar and a wide range of absolute rates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sliceai.forecast.config import ForecastConfig, day_period
from sliceai.forecast.errors import ForecastError
from sliceai.traffic import DIRECTION_NAMES, Trace

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Series:
    """One column of a trace: ``values`` ``(n_intervals,)`` bit/s (NaN = missing).

    Windows forecast from origins ``first_target`` onwards; the intervals before it
    serve as history only.
    """

    name: str
    values: FloatArray
    start: float
    interval_s: float
    first_target: int = 0

    def split(self, fraction: float, history: int = 0) -> tuple[Series, Series]:
        """The first ``fraction`` of the intervals and the rest (time order kept).

        The second part keeps up to ``history`` intervals before the cut as history
        only, so its windows can look as far back as a model reads, while their
        targets all lie after the cut.
        """
        cut = int(len(self.values) * fraction)
        first = max(0, cut - history)
        return (
            Series(self.name, self.values[:cut], self.start, self.interval_s),
            Series(
                self.name,
                self.values[first:],
                self.start + first * self.interval_s,
                self.interval_s,
                first_target=cut - first,
            ),
        )


@dataclass(frozen=True)
class Windows:
    """A batch of windows: ``context`` ``(n, context_length)``, ``target`` ``(n, horizon)``
    bit/s, ``start_time`` ``(n,)`` epoch s of the first context interval (NaN = unknown),
    ``seasonal`` ``(n, seasonal_window)`` bit/s one day before the origin (see
    :func:`sliceai.forecast.features.seasonal_slice`; NaN = not in the history)."""

    context: FloatArray
    target: FloatArray
    start_time: FloatArray
    interval_s: FloatArray
    seasonal: FloatArray | None = None


def series_from_trace(trace: Trace, prefix: str = "") -> list[Series]:
    """Every (slice, direction) column of ``trace`` as a :class:`Series`."""
    out = []
    for i, name in enumerate(trace.slices):
        for d, dname in enumerate(DIRECTION_NAMES):
            values = np.array(trace.load_bps[:, i, d], dtype=np.float64)
            out.append(Series(f"{prefix}{name}/{dname}", values, trace.start, trace.interval_s))
    return out


def series_from_traces(traces: Iterable[Trace]) -> list[Series]:
    return [s for k, t in enumerate(traces) for s in series_from_trace(t, prefix=f"{k}:")]


def sample_windows(
    series: Sequence[Series],
    n: int,
    context_length: int,
    horizon: int,
    rng: np.random.Generator,
    augment: bool = True,
    seasonal_window: int = 0,
    seasonal_min_interval_s: float = 0.0,
) -> Windows:
    """``n`` random windows whose targets are fully observed; series at intervals below
    ``seasonal_min_interval_s`` leave the seasonal window unobserved.

    With ``augment``: 10% get a history truncated to 1..context_length points (and
    lose the seasonal window), another 10% lose the seasonal window, 10% lose 5% of
    their context points, 10% lose the calendar, 30% are rescaled by a log-uniform
    factor in [1e-3, 1e3] (clipped to 1e3..1e11 bit/s).
    """
    usable = [s for s in series if len(s.values) > max(s.first_target, 1) + horizon]
    if not usable:
        raise ForecastError(f"no series longer than the horizon ({horizon} intervals) to train on")
    contexts = np.full((n, context_length), np.nan)
    targets = np.empty((n, horizon))
    starts = np.empty(n)
    intervals = np.empty(n)
    seasonal = np.full((n, seasonal_window), np.nan)
    lag_offsets = np.arange(seasonal_window) - seasonal_window // 2
    filled = 0
    for _ in range(50):
        if filled >= n:
            break
        want = n - filled
        picks = rng.integers(0, len(usable), size=want * 2)
        for k in picks:
            s = usable[k]
            origin = int(rng.integers(max(s.first_target, 1), len(s.values) - horizon + 1))
            target = s.values[origin : origin + horizon]
            if not np.all(np.isfinite(target)):
                continue
            first = max(0, origin - context_length)
            ctx = s.values[first:origin]
            contexts[filled, context_length - len(ctx) :] = ctx
            targets[filled] = target
            starts[filled] = s.start + (origin - context_length) * s.interval_s
            intervals[filled] = s.interval_s
            if seasonal_window and s.interval_s >= seasonal_min_interval_s:
                idx = origin - day_period(s.interval_s) + lag_offsets
                ok = (idx >= 0) & (idx < origin)
                seasonal[filled, ok] = s.values[idx[ok]]
            filled += 1
            if filled >= n:
                break
    if filled < n:
        raise ForecastError("too few fully observed target windows in the training series")
    if augment:
        _augment(contexts, targets, starts, seasonal, context_length, rng)
    return Windows(contexts, targets, starts, intervals, seasonal)


def config_windows(
    series: Sequence[Series],
    n: int,
    config: ForecastConfig,
    rng: np.random.Generator,
    augment: bool = True,
) -> Windows:
    """:func:`sample_windows` with the context, horizon and yesterday's window of ``config``."""
    return sample_windows(
        series,
        n,
        config.context_length,
        config.max_horizon,
        rng,
        augment=augment,
        seasonal_window=config.seasonal_window,
        seasonal_min_interval_s=config.seasonal_min_interval_s,
    )


def _augment(
    contexts: FloatArray,
    targets: FloatArray,
    starts: FloatArray,
    seasonal: FloatArray,
    context_length: int,
    rng: np.random.Generator,
) -> None:
    n = len(contexts)
    short = rng.random(n) < 0.1
    keep = rng.integers(1, context_length + 1, size=n)
    cols = np.arange(context_length)[None, :]
    contexts[short[:, None] & (cols < (context_length - keep)[:, None])] = np.nan
    seasonal[short | (rng.random(n) < 0.1)] = np.nan
    holes = (rng.random(n) < 0.1)[:, None] & (rng.random(contexts.shape) < 0.05)
    contexts[holes] = np.nan
    starts[rng.random(n) < 0.1] = np.nan
    rescale = rng.random(n) < 0.3
    factor = np.where(rescale, 10.0 ** rng.uniform(-3, 3, size=n), 1.0)
    observed = np.isfinite(contexts)
    count = observed.sum(axis=1)
    total = np.where(observed, contexts, 0.0).sum(axis=1)
    level = np.divide(total, count, out=np.ones(n), where=count > 0)
    level = np.where(level > 0, level, 1.0)
    factor = np.clip(factor, 1e3 / level, 1e11 / level)
    factor = np.where(rescale, factor, 1.0)
    contexts *= factor[:, None]
    targets *= factor[:, None]
    seasonal *= factor[:, None]


def synthetic_series(
    n_series: int,
    n_intervals: int,
    interval_s: float = 60.0,
    seed: int = 0,
    start: float = 1_700_000_000.0,
) -> list[Series]:
    """Diurnal traffic with log-normal AR(1) noise, bursts and an all-zero series.

    For tests and development only; real training uses the scenario generators.
    """
    rng = np.random.default_rng(seed)
    t = start + interval_s * np.arange(n_intervals)
    day_phase = 2 * np.pi * np.mod(t, 86400.0) / 86400.0
    out = []
    for k in range(n_series):
        level = 10.0 ** rng.uniform(4, 9)
        amp = rng.uniform(0.2, 0.9)
        profile = 1.0 + amp * np.sin(day_phase - rng.uniform(0, 2 * np.pi))
        noise = np.empty(n_intervals)
        phi, sd = rng.uniform(0.3, 0.95), rng.uniform(0.05, 0.4)
        noise[0] = 0.0
        shocks = rng.normal(0, sd * np.sqrt(1 - phi**2), n_intervals)
        for i in range(1, n_intervals):
            noise[i] = phi * noise[i - 1] + shocks[i]
        values = level * profile * np.exp(noise)
        bursts = rng.random(n_intervals) < 0.01
        values[bursts] *= rng.uniform(2, 5, size=int(bursts.sum()))
        if k == n_series - 1 and n_series > 2:
            values[:] = 0.0
        out.append(Series(f"synthetic-{k}", values, start, interval_s))
    return out
