"""Session filter: the running sessions of a series, inferred from its load (numpy only).

Many slices carry sessions: a consult, a firmware push, an XR game each start, hold a
rate (times noise) for a while and end. A network that reads a context window sees the
load; what it cannot see well at a 10 s clock is *which* sessions run, how long they have
run and so how soon they end. :class:`SessionParticleFilter` tracks that as particles, one
interval at a time, under a :class:`SessionLaw` (arrival intensity per interval, a
length hazard, a lognormal rate law, multiplicative AR(1) noise, an optional cap), and
forecasts by running the law on from the particles. The law comes either from a
scenario (:mod:`research.forecast.session_filter`) or fitted from the load
(:mod:`research.forecast.session_fit`); :mod:`research.forecast.session_assist` pools the
filter's paths with the model's.

Particles hold up to :data:`SLOTS` sessions (rate, intervals run). Each interval:
running sessions end with the length law's hazard at their age; new sessions arrive
as Poisson starts, the first one's rate drawn near the rate the observation implies
(importance-weighted against the rate law); the weight is the noise's density of the
observed value given the particle's summed rate (given the AR state, the value fixes
the noise exactly), or its tail beyond the cap where the cap clipped it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import log_ndtr, ndtr, ndtri
from scipy.stats import norm

from sliceai.traffic.scenario_model import LogNormalSetting

Array = np.ndarray
#: Sessions a particle can hold at once.
SLOTS = 24
#: The data-driven proposal for a new session's rate is this much wider than the noise.
PROPOSAL_WIDTH = 1.2


@dataclass(frozen=True)
class SessionLaw:
    """What the filter knows of one direction of a sessions slice."""

    intensity: Array  # (n,) expected session starts per interval
    hazard: Array  # (a,) chance that a session that has run ``a`` intervals ends now
    rate: LogNormalSetting  # the session rate law, bit/s, before the direction's split
    split: float  # the direction's share of each session's rate
    sigma: float  # the noise's log-space standard deviation
    phi: float  # the noise's correlation from one interval to the next
    cap: float | None  # the slice's cap (the load is clipped there)

    def draw_rates(self, rng: np.random.Generator, size: Any) -> Array:
        r: Array = self.rate.median * np.exp(self.rate.sigma * rng.standard_normal(size))
        return np.minimum(r, self.rate.max) if self.rate.max is not None else r

    def log_rate_density(self, r: Array) -> Array:
        """Log density of the rate law at ``r`` below its max (the lognormal's)."""
        r = np.maximum(r, 1e-9)
        z = np.log(r / self.rate.median) / self.rate.sigma
        out: Array = norm.logpdf(z) - np.log(r * self.rate.sigma)
        return out


def length_hazard(duration: LogNormalSetting, dt: float) -> Array:
    """``h[a]``: the chance that a session that has run ``a`` intervals ends after exactly
    ``a``, with lengths drawn as the generator draws them (``max(1, round(min(lognormal,
    max) / dt))``); 1 beyond the longest."""
    top = (
        duration.max if duration.max is not None else duration.median * math.exp(5 * duration.sigma)
    )
    longest = max(1, round(top / dt))
    edges = (np.arange(1, longest + 1) + 0.5) * dt  # length <= a  <=>  draw < (a + 0.5) dt
    cdf = ndtr(np.log(edges / duration.median) / duration.sigma)
    cdf[-1] = 1.0  # the max clips the rest onto the longest length
    pmf = np.diff(np.concatenate([[0.0], cdf]))  # P(length = a), a = 1 .. longest
    alive = 1.0 - np.concatenate([[0.0], cdf[:-1]])  # P(length >= a)
    hazard = np.ones(longest + 2)
    hazard[0] = 0.0
    hazard[1 : longest + 1] = np.where(alive > 1e-12, pmf / np.maximum(alive, 1e-12), 1.0)
    return np.clip(hazard, 0.0, 1.0)


class SessionParticleFilter:
    """Particles over the running sessions of one series (see the module docstring)."""

    def __init__(self, law: SessionLaw, particles: int, rng: np.random.Generator) -> None:
        self.law, self.n, self.rng = law, particles, rng
        self.rates = np.zeros((particles, SLOTS))
        self.age = np.zeros((particles, SLOTS), dtype=np.int64)
        self.on = np.zeros((particles, SLOTS), dtype=bool)
        self.noise = rng.standard_normal(particles)  # the AR(1) state, unit variance
        self.log_w = np.zeros(particles)
        self._steady_start()

    def _steady_start(self) -> None:
        """Sessions running as the series opens, as the law runs them at its first
        interval's intensity: a Poisson count, ages as long as a running session's
        (chance of age ``a`` in proportion to ``P(length >= a)``), rates from the law."""
        alive = np.cumprod(1.0 - self.law.hazard)  # P(length > a), a = 0, 1, ...
        counts = self.rng.poisson(self.law.intensity[0] * alive.sum(), self.n)
        for k in range(int(counts.max(initial=0))):
            rows = np.flatnonzero(counts > k)
            rows, slot = self._start(
                self.on, self.rates, self.age, rows, self.law.draw_rates(self.rng, len(rows))
            )
            self.age[rows, slot] = self.rng.choice(len(alive), len(rows), p=alive / alive.sum()) + 1

    def _age_and_end(self, on: Array, age: Array) -> None:
        """One interval on: sessions end with the hazard at their age, the rest age."""
        h = self.law.hazard[np.minimum(age, len(self.law.hazard) - 1)]
        on &= ~(self.rng.random(on.shape) < h)
        age += on

    def _start(
        self, on: Array, rates: Array, age: Array, rows: Array, new: Array
    ) -> tuple[Array, Array]:
        """Start sessions of rates ``new`` in the first free slot of particles ``rows``
        (having run the interval they start in); the (rows, slots) that had room."""
        slot = np.argmax(~on[rows], axis=1)
        free = ~on[rows, slot]
        rows, slot = rows[free], slot[free]
        on[rows, slot], rates[rows, slot], age[rows, slot] = True, new[free], 1
        return rows, slot

    def update(self, t: int, y: float) -> None:
        """Fold in the load ``y`` observed in interval ``t`` (NaN: missing, the particles
        run on under the law unweighed)."""
        law, rng = self.law, self.rng
        self._age_and_end(self.on, self.age)
        counts = rng.poisson(law.intensity[t], self.n)
        seen = math.isfinite(y)
        for k in range(int(counts.max(initial=0))):
            rows = np.flatnonzero(counts > k)
            new = law.draw_rates(rng, len(rows))
            if seen and k == 0 and y > 0 and (law.cap is None or y < law.cap):
                new = self._propose(rows, y, new)
            self._start(self.on, self.rates, self.age, rows, new)
        if not seen:
            self.noise = self._next_noise(self.noise)
            return
        self._weigh(y)
        weights = np.exp(self.log_w - self.log_w.max())
        if (weights.sum() ** 2) / (weights**2).sum() < self.n / 2:  # effective size
            pick = rng.choice(self.n, self.n, p=weights / weights.sum())
            self.rates, self.age, self.on = self.rates[pick], self.age[pick], self.on[pick]
            self.noise, self.log_w = self.noise[pick], np.zeros(self.n)

    def _propose(self, rows: Array, y: float, prior: Array) -> Array:
        """New rates near what ``y`` implies for particles ``rows``, importance-weighted
        against the rate law (its atom at the max included); the law's own draws
        ``prior`` where ``y`` implies too little."""
        law, sig = self.law, self.law.sigma
        rest = (self.rates[rows] * self.on[rows]).sum(axis=1) * law.split
        mean_noise = np.exp(sig * law.phi * self.noise[rows] - sig * sig / 2.0)
        implied = (y / mean_noise - rest) / law.split
        use = implied > 0.2 * law.rate.median
        spread = np.maximum(implied, 1.0) * sig * math.sqrt(1 - law.phi**2) * PROPOSAL_WIDTH
        drawn = np.maximum(implied + spread * self.rng.standard_normal(len(rows)), 1.0)
        log_ratio = law.log_rate_density(drawn) - norm.logpdf(drawn, implied, spread)
        top = law.rate.max
        if top is not None:  # draws above the max stand for the law's atom there
            at_top = drawn >= top
            atom = log_ndtr(-np.log(top / law.rate.median) / law.rate.sigma)
            beyond = log_ndtr(-(top - implied) / spread)
            log_ratio = np.where(at_top, atom - beyond, log_ratio)
            drawn = np.minimum(drawn, top)
        self.log_w[rows] += np.where(use, log_ratio, 0.0)
        out: Array = np.where(use, drawn, prior)
        return out

    def _weigh(self, y: float) -> None:
        """Weights by the noise's density of ``y`` given each particle's summed rate."""
        law, sig = self.law, self.law.sigma
        total = (self.rates * self.on).sum(axis=1) * law.split
        busy = total > 0
        if y <= 0:  # an idle interval: only idle particles explain it
            self.log_w += np.where(busy, -np.inf, 0.0)
            self.noise = self._next_noise(self.noise)
        else:
            safe = np.where(busy, total, 1.0)
            cond_sd = math.sqrt(1 - law.phi**2)
            g = (np.log(y / safe) + sig * sig / 2.0) / sig
            if law.cap is not None and y >= law.cap * (1 - 1e-9):  # clipped: the tail
                z = (g - law.phi * self.noise) / cond_sd
                self.log_w += np.where(busy, log_ndtr(-z), -np.inf)
                u = ndtr(z) + (1 - ndtr(z)) * self.rng.random(self.n)
                g = law.phi * self.noise + cond_sd * ndtri(np.clip(u, 1e-12, 1 - 1e-12))
            else:
                density = norm.logpdf(g, law.phi * self.noise, cond_sd)
                self.log_w += np.where(busy, density, -np.inf)
            self.noise = np.where(busy, g, self.noise)
        if not np.isfinite(self.log_w.max()):
            self._recover(y)

    def _recover(self, y: float) -> None:
        """No particle explains ``y``: make every particle explain it (all idle for 0, one
        session at the observed rate where a particle is idle otherwise), weights equal."""
        self.log_w[:] = 0.0
        if y <= 0:
            self.on[:] = False
            return
        idle = np.flatnonzero(~self.on.any(axis=1))
        self._start(self.on, self.rates, self.age, idle, np.full(len(idle), y / self.law.split))
        self.noise[idle] = self.law.sigma / 2.0  # log(y / rate) = 0

    def _next_noise(self, g: Array) -> Array:
        out: Array = self.law.phi * g + math.sqrt(1 - self.law.phi**2) * self.rng.standard_normal(
            g.shape
        )
        return out

    def forecast(self, t: int, horizon: int, paths: int) -> Array:
        """``(horizon, paths)`` draws of the load from interval ``t`` on, before ``y[t]``."""
        law, rng = self.law, self.rng
        w = np.exp(self.log_w - self.log_w.max())
        pick = rng.choice(self.n, paths, p=w / w.sum())
        on, rates, age = self.on[pick].copy(), self.rates[pick].copy(), self.age[pick].copy()
        g = self.noise[pick]
        out = np.empty((horizon, paths))
        for h in range(horizon):
            self._age_and_end(on, age)
            counts = rng.poisson(law.intensity[t + h], paths)
            for k in range(int(counts.max(initial=0))):
                rows = np.flatnonzero(counts > k)
                self._start(on, rates, age, rows, law.draw_rates(rng, len(rows)))
            g = self._next_noise(g)
            load = (rates * on).sum(axis=1) * law.split * np.exp(law.sigma * g - law.sigma**2 / 2)
            out[h] = load if law.cap is None else np.minimum(load, law.cap)
        return out
