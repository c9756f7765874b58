"""Continuous-time building blocks of the held-out traffic family.

Every traffic model here first draws *events* in continuous time (sessions,
Markov sojourns, alarm bursts) as rectangular rate pulses, independent of the
interval length; :func:`interval_means` then averages those pulses over any
grid. Only the per-interval noise depends on the interval length, and it is
scaled with it (:func:`interval_sigma`), so a 1 s and a 10 s trace of the same
seed and duration share their events.

Times inside a trace are seconds since its start; the diurnal clock also needs
the absolute start (epoch seconds, UTC) to place hours of the day and weekends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

SECONDS_PER_HOUR = 3_600.0
SECONDS_PER_DAY = 86_400.0
REFERENCE_INTERVAL_S = 10.0
"""Interval length at which noise amplitudes are quoted (``..._sigma_10s``)."""
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


@dataclass(frozen=True)
class Pulses:
    """Rectangular rate pulses ``[start_s, end_s)`` at ``rate_bps[:, direction]``."""

    start_s: FloatArray
    end_s: FloatArray
    rate_bps: FloatArray  # (n_pulses, 2): downlink, uplink

    @staticmethod
    def empty() -> Pulses:
        return Pulses(np.zeros(0), np.zeros(0), np.zeros((0, 2)))

    @staticmethod
    def join(parts: list[Pulses]) -> Pulses:
        if not parts:
            return Pulses.empty()
        return Pulses(
            np.concatenate([p.start_s for p in parts]),
            np.concatenate([p.end_s for p in parts]),
            np.concatenate([p.rate_bps for p in parts]),
        )

    def __len__(self) -> int:
        return int(self.start_s.shape[0])


def interval_means(pulses: Pulses, n_intervals: int, interval_s: float) -> FloatArray:
    """Mean rate of the summed pulses over each interval, shape ``(n_intervals, 2)``.

    Exact up to rounding for rectangles; an interval that no pulse overlaps is
    exactly 0 (an integer count of overlapping pulses decides it, so float
    cancellation in the running sum cannot leave a tiny residue there).
    """
    horizon = n_intervals * interval_s
    start = np.clip(pulses.start_s, 0.0, horizon)
    end = np.clip(pulses.end_s, 0.0, horizon)
    keep = end > start
    start, end, rate = start[keep], end[keep], pulses.rate_bps[keep]
    out = np.zeros((n_intervals, 2))
    if start.size == 0:
        return out
    first = np.minimum(np.floor(start / interval_s).astype(np.int64), n_intervals - 1)
    last = np.minimum(np.ceil(end / interval_s).astype(np.int64) - 1, n_intervals - 1)
    last = np.maximum(last, first)
    within = first == last
    np.add.at(out, first[within], rate[within] * ((end - start)[within] / interval_s)[:, None])
    spans = ~within
    f, la, r = first[spans], last[spans], rate[spans]
    head = np.clip(((f + 1) * interval_s - start[spans]) / interval_s, 0.0, 1.0)
    tail = np.clip((end[spans] - la * interval_s) / interval_s, 0.0, 1.0)
    np.add.at(out, f, r * head[:, None])
    np.add.at(out, la, r * tail[:, None])
    full = la > f + 1
    steps = np.zeros((n_intervals + 1, 2))
    np.add.at(steps, f[full] + 1, r[full])
    np.add.at(steps, la[full], -r[full])
    out += np.cumsum(steps[:n_intervals], axis=0)
    overlapping = np.zeros(n_intervals + 1, dtype=np.int64)
    np.add.at(overlapping, first, 1)
    np.add.at(overlapping, last + 1, -1)
    out[np.cumsum(overlapping[:n_intervals]) == 0] = 0.0
    return np.maximum(out, 0.0)


def interval_sigma(sigma_10s: float, interval_s: float, hurst: float) -> float:
    """Log-scale noise amplitude at ``interval_s`` given the one at 10 s.

    The standard deviation of a mean over an interval of length T scales as
    ``T**(H - 1)``: ``H = 0.5`` for independent fluctuations (white noise),
    closer to 1 for long-range dependent ones that average out slowly.
    """
    return float(sigma_10s * (interval_s / REFERENCE_INTERVAL_S) ** (hurst - 1.0))


def lognormal_noise(
    rng: np.random.Generator, sigma: float | FloatArray, shape: tuple[int, ...]
) -> FloatArray:
    """Multiplicative noise with mean 1: ``exp(sigma Z - sigma^2 / 2)``."""
    s = np.broadcast_to(np.asarray(sigma, dtype=np.float64), shape)
    return np.exp(s * rng.standard_normal(shape) - 0.5 * s * s)


@dataclass(frozen=True)
class DiurnalProfile:
    """Relative activity over the day and week; 1 at the daily peak of a weekday.

    ``level(h) = floor + (1 - floor) * s(h)`` with ``s`` the min-max normalised sum of a
    24 h cosine peaking at ``peak_hour`` and a 12 h one of relative amplitude
    ``second_amplitude`` peaking at ``second_peak_hour`` (a lunch dip or an evening
    shoulder). Saturdays and Sundays (UTC) are multiplied by ``weekend_level``; every
    calendar day by a lognormal factor of spread ``day_sigma``, interpolated between
    day centres so that levels do not jump at midnight.
    """

    peak_hour: float
    floor: float
    second_amplitude: float
    second_peak_hour: float
    weekend_level: float
    day_sigma: float

    def shape(self, hour: FloatArray) -> FloatArray:
        """The normalised daily shape ``s(hour)`` in [0, 1]."""
        raw = self._raw(hour)
        grid = self._raw(np.linspace(0.0, 24.0, 1441))
        lo, hi = float(grid.min()), float(grid.max())
        return np.clip((raw - lo) / max(hi - lo, 1e-12), 0.0, 1.0)

    def _raw(self, hour: FloatArray) -> FloatArray:
        w = 2.0 * math.pi / 24.0
        return np.cos(w * (hour - self.peak_hour)) + self.second_amplitude * np.cos(
            2.0 * w * (hour - self.second_peak_hour)
        )


class DiurnalClock:
    """A :class:`DiurnalProfile` placed on a trace: relative time in, activity out."""

    def __init__(
        self,
        profile: DiurnalProfile,
        start_epoch_s: float,
        horizon_s: float,
        rng: np.random.Generator,
    ) -> None:
        self.profile = profile
        self.start_epoch_s = start_epoch_s
        first_day = math.floor(start_epoch_s / SECONDS_PER_DAY) - 1
        last_day = math.floor((start_epoch_s + horizon_s) / SECONDS_PER_DAY) + 1
        self._day_index = np.arange(first_day, last_day + 1, dtype=np.float64)
        sigma = profile.day_sigma
        self._day_factor = np.exp(
            sigma * rng.standard_normal(self._day_index.size) - 0.5 * sigma * sigma
        )
        self.upper_bound = float(self._day_factor.max())
        """No activity level on this trace exceeds it (for thinning)."""

    def level(self, t_s: FloatArray) -> FloatArray:
        """Activity at relative times ``t_s`` (seconds since the trace start)."""
        absolute = self.start_epoch_s + np.asarray(t_s, dtype=np.float64)
        hour = np.mod(absolute, SECONDS_PER_DAY) / SECONDS_PER_HOUR
        p = self.profile
        level = p.floor + (1.0 - p.floor) * p.shape(hour)
        day = np.floor(absolute / SECONDS_PER_DAY)
        weekend = np.mod(day + _EPOCH_WEEKDAY, 7) >= 5
        level = np.where(weekend, level * p.weekend_level, level)
        day_position = absolute / SECONDS_PER_DAY - 0.5
        return level * np.interp(day_position, self._day_index, self._day_factor)

    def keep(self, t_s: FloatArray, rng: np.random.Generator) -> npt.NDArray[np.bool_]:
        """Thinning (Lewis and Shedler): keep an event at ``t`` with probability level/bound."""
        return rng.random(np.shape(t_s)) * self.upper_bound < self.level(t_s)

    def interval_levels(self, n_intervals: int, interval_s: float) -> FloatArray:
        """Activity at the middle of every interval, shape ``(n_intervals,)``."""
        middles = (np.arange(n_intervals, dtype=np.float64) + 0.5) * interval_s
        return self.level(middles)
