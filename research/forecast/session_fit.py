"""A :class:`~research.forecast.sessions.SessionLaw` fitted from a series' own past load.

No forecaster of a user's trace knows the law its sessions follow; these fits read one
from the load alone, as Poisson sessions (an M/G/inf queue with lognormal lengths and
rates, times multiplicative AR(1) noise), in one of two ways:

- **edges**, for sparse series (busy under :data:`SPARSE_BUSY` of the time, idle exactly
  0 between sessions). An arrival into an idle series starts a busy run, so the arrival
  intensity is starts per idle interval, by hour of day (shrunk towards the mean over an
  hour's worth of idle intervals) on the days that saw a start, times a factor per
  weekday once a whole one is seen. The running count is ``-log P(idle)`` per hour, so
  the mean length is its sum over the arrivals' sum; the lengths' spread is the runs'.
  The first intervals of a run hold exactly one session: their level is a session's rate.
- **moments**, for busier series: the mean length from the shape of the variogram over
  the busiest hours (``E[min(L, k)] / E[L]``), the mean rate from variance over mean,
  the intensity from the level by hour of day (led by half a session) and by weekday.

Both read the noise from the log differences of busy neighbours. :func:`fit_session_law`
picks the way, and returns None where the past holds no plausible sessions law.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from research.forecast.sessions import SessionLaw, length_hazard
from sliceai.traffic.generators import Clock
from sliceai.traffic.scenario_model import LogNormalSetting

Array = np.ndarray
#: A series busy less than this share of its past is fitted from its idle / busy edges.
SPARSE_BUSY = 0.2
#: Busy intervals and busy runs a past needs before any law is fitted.
MIN_BUSY, MIN_RUNS = 30, 5
#: Busy intervals the moments fit needs.
MIN_BUSY_MOMENTS = 100
#: Variogram lags (intervals) the moments fit reads.
MAX_LAG = 720
#: Log-space spread of session rates the moments fit assumes (moments do not separate it).
RATE_SIGMA = 0.4
#: A fitted law with more expected starts per interval than this is not a sessions slice.
MAX_STARTS = 2.0
#: Refit cadence, seconds: the edges fit is cheap, the moments fit reads a variogram.
REFIT_S = {"edges": 3600.0, "moments": 86400.0}


@dataclass(frozen=True)
class FittedLaw:
    law: SessionLaw
    way: str  # "edges" or "moments"

    @property
    def refit_s(self) -> float:
        return REFIT_S[self.way]


def fit_session_law(values: Array, clock: Clock, end: int) -> FittedLaw | None:
    """The law of ``values[:end]`` (bit/s, NaN where missing) on ``clock`` (which spans
    at least as far as the law is to be used), or None (see the module docstring)."""
    x = np.asarray(values[:end], dtype=np.float64)
    seen = np.isfinite(x)
    busy = seen & (x > 0)
    if busy.sum() < MIN_BUSY:
        return None
    if busy.sum() < SPARSE_BUSY * seen.sum():
        law = fit_from_edges(x, clock)
        return None if law is None else FittedLaw(law, "edges")
    law = fit_from_moments(x, clock)
    return None if law is None else FittedLaw(law, "moments")


def _noise(x: Array, busy: Array) -> tuple[float, float]:
    """``(sigma, phi)`` of the AR(1) noise in log space, from the log differences of busy
    neighbours (a robust spread and the lag-1 correlation of the differences)."""
    dlog = np.diff(np.log(np.where(busy, x, 1.0)))
    pair = busy[1:] & busy[:-1]
    d = dlog[pair]
    both = pair[:-1] & pair[1:]
    if both.sum() < 3:
        return 0.1, 0.0
    c1 = np.corrcoef(np.clip(dlog[:-1][both], -0.6, 0.6), np.clip(dlog[1:][both], -0.6, 0.6))[0, 1]
    phi = float(np.clip(1.0 + 2.0 * np.nan_to_num(c1), 0.0, 0.95))
    mad = 1.4826 * float(np.median(np.abs(d - np.median(d))))
    return max(mad / math.sqrt(2.0 * (1.0 - phi)), 0.02), phi


def _runs(busy: Array) -> tuple[Array, Array]:
    """Starts and (exclusive) ends of the busy runs."""
    step = np.diff(np.concatenate([[0], busy.astype(np.int8), [0]]))
    return np.flatnonzero(step == 1), np.flatnonzero(step == -1)


def fit_from_edges(x: Array, clock: Clock) -> SessionLaw | None:
    """Edges fit of a sparse past ``x`` (see the module docstring)."""
    end, dt = len(x), clock.dt
    seen = np.isfinite(x)
    busy, idle = seen & (x > 0), seen & (x == 0)
    starts, ends = _runs(busy)
    if len(starts) < MIN_RUNS:
        return None
    hour = np.floor(clock.hour[:end]).astype(np.int64)
    weekday = clock.weekday[:end]
    started = np.zeros(end, dtype=bool)
    started[starts[starts > 0]] = True
    started &= np.concatenate([[False], idle[:-1]])  # a run after a missing value: unknown
    was_idle = np.concatenate([[False], idle[:-1]])
    if started.sum() < MIN_RUNS:  # too few runs seen to start from idle
        return None
    # mean length: running count -log P(idle) over arrivals, per hour of the past
    cell = (np.arange(end) * dt // 3600).astype(np.int64)
    n_cell = np.bincount(cell, weights=seen)
    p_idle = np.bincount(cell, weights=idle) / np.maximum(n_cell, 1)
    running = -np.log(np.clip(p_idle, 0.5 / np.maximum(n_cell, 1), 1.0))
    arrivals = np.bincount(cell, weights=started) / np.maximum(
        np.bincount(cell, weights=was_idle), 1
    )
    mean_length = float((running * n_cell).sum() / max((arrivals * n_cell).sum(), 1e-12))
    whole = (starts > 0) & (ends < end)
    lengths = (ends - starts)[whole]
    sigma_l = float(np.clip(np.std(np.log(lengths * dt)), 0.2, 1.2)) if len(lengths) > 3 else 0.6
    median_s = mean_length * dt / math.exp(sigma_l**2 / 2.0)
    sigma, phi = _noise(x, busy)
    # rates: the level of a run's first intervals (one session), noise median undone
    log_x = np.log(np.where(busy, x, 1.0))
    k = 3
    first = np.array(
        [np.median(log_x[a : min(a + k, b)]) for a, b in zip(starts, ends, strict=True)]
    )
    first += sigma**2 / 2.0
    rate_sigma = float(np.sqrt(max(np.var(first) - sigma**2 / k, 0.01)))
    # a cap shows as the top value repeated exactly
    top = float(np.nanmax(x))
    cap = top if np.sum(x >= top * (1 - 1e-9)) >= 3 else None
    # intensity: by hour over the days that saw a start (shrunk to their mean), by weekday
    day = (np.arange(end) * dt // 86400).astype(np.int64)
    active = (np.bincount(day, weights=started) > 0)[day]
    starts_h = np.bincount(hour[started], minlength=24).astype(np.float64)
    idle_h = np.bincount(hour[was_idle & active], minlength=24).astype(np.float64)
    shrink = 3600.0 / dt
    mean_rate = starts_h.sum() / max(idle_h.sum(), 1.0)
    by_hour = (starts_h + shrink * mean_rate) / (idle_h + shrink)
    factor = np.ones(7)
    for w in np.unique(weekday):
        if np.sum(weekday == w) * dt >= 20 * 3600:  # a whole weekday seen
            expected = by_hour[hour[(weekday == w) & was_idle]].sum()
            factor[w] = started[weekday == w].sum() / expected if expected > 0 else 1.0
    intensity = by_hour[np.floor(clock.hour).astype(np.int64) % 24] * factor[clock.weekday]
    if intensity.max() > MAX_STARTS:
        return None
    return SessionLaw(
        intensity=intensity,
        hazard=length_hazard(
            LogNormalSetting(median=median_s, sigma=sigma_l, max=median_s * math.exp(3 * sigma_l)),
            dt,
        ),
        rate=LogNormalSetting(median=float(np.exp(np.median(first))), sigma=rate_sigma, max=None),
        split=1.0,
        sigma=sigma,
        phi=phi,
        cap=cap,
    )


def _length_shape(median_s: float, sigma: float, lags: Array, dt: float) -> Array:
    """``E[min(L, k)] / E[L]`` at ``lags`` for lognormal lengths rounded to intervals."""
    z = np.linspace(-4.0, 4.0, 161)
    w = np.exp(-0.5 * z * z)
    w /= w.sum()
    length = np.maximum(1.0, np.round(median_s * np.exp(sigma * z) / dt))
    out: Array = (np.minimum(length[None, :], lags[:, None]) * w).sum(axis=1) / (length * w).sum()
    return out


def fit_from_moments(x: Array, clock: Clock) -> SessionLaw | None:
    """Moments fit of a busier past ``x`` (see the module docstring)."""
    end, dt = len(x), clock.dt
    seen = np.isfinite(x)
    x0 = np.where(seen, x, 0.0)
    hour = np.floor(clock.hour[:end]).astype(np.int64)
    weekday = clock.weekday[:end]
    by_hour = np.bincount(hour, weights=x0, minlength=24) / np.maximum(
        np.bincount(hour, weights=seen, minlength=24), 1
    )
    if by_hour.max() <= 0 or np.sum(x0 > 0) < MIN_BUSY_MOMENTS:
        return None
    busiest = (by_hour >= 0.5 * by_hour.max())[hour] & seen
    mean, var = float(x[busiest].mean()), float(x[busiest].var())
    sigma, phi = _noise(x0, seen & (x0 > 0))
    noise_var = float(np.mean(x[busiest] ** 2)) * (1.0 - math.exp(-sigma * sigma))
    # lengths: the variogram of the sessions' sum rises as E[min(L, k)]
    lags = np.arange(1, MAX_LAG + 1)
    vario = np.full(MAX_LAG, np.nan)
    for j, k in enumerate(lags[: max(0, end - 1)]):
        ok = busiest[:-k] & busiest[k:]
        if ok.sum() > 50:
            vario[j] = np.mean((x0[k:][ok] - x0[:-k][ok]) ** 2)
    if np.isfinite(vario).sum() < 10:  # too few busy pairs to read the lengths from
        return None
    var_sessions = max(var - noise_var, 1e-9)
    shape = (vario - 2.0 * noise_var * (1.0 - phi**lags)) / (2.0 * var_sessions)
    best, median_s, sigma_l = np.inf, 900.0, 0.5
    for m in np.exp(np.linspace(np.log(30.0), np.log(4 * 3600.0), 50)):
        for s in (0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0):
            err = float(np.nansum((_length_shape(m, s, lags, dt) - shape) ** 2))
            if err < best:
                best, median_s, sigma_l = err, m, s
    mean_length = median_s * math.exp(sigma_l**2 / 2.0) / dt  # intervals
    rate_median = var_sessions / max(mean, 1e-9) / math.exp(1.5 * RATE_SIGMA**2)
    per_level = 1.0 / (rate_median * math.exp(RATE_SIGMA**2 / 2.0) * mean_length)
    # arrivals follow the level by hour, half a session earlier, and by weekday once seen
    lead_h = clock.hour + mean_length * dt / 2.0 / 3600.0
    profile = np.interp(
        lead_h % 24.0, np.arange(25) + 0.5, np.append(by_hour, by_hour[0]), period=24
    )
    factor = np.ones(7)
    whole = [w for w in np.unique(weekday) if np.sum(weekday == w) * dt >= 20 * 3600]
    overall = float(x0[np.isin(weekday, whole)].mean()) if whole else 0.0
    for w in whole:
        factor[w] = float(x0[weekday == w].mean()) / overall if overall > 0 else 1.0
    intensity = profile * factor[clock.weekday] * per_level
    if intensity.max() > MAX_STARTS:
        return None
    return SessionLaw(
        intensity=intensity,
        hazard=length_hazard(
            LogNormalSetting(
                median=median_s, sigma=sigma_l, max=median_s * math.exp(3.0 * sigma_l)
            ),
            dt,
        ),
        rate=LogNormalSetting(median=rate_median, sigma=RATE_SIGMA, max=None),
        split=1.0,
        sigma=sigma,
        phi=phi,
        cap=None,
    )
