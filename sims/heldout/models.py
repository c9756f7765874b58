"""The three traffic models of the held-out family, each at unit scale.

Each model draws its events in continuous time from ``events_rng`` (so they do
not depend on the interval length), averages them over the grid and applies
per-interval noise from ``noise_rng``. Rates are relative (a median session or
device sends 1); :mod:`sims.heldout.family` scales them to the policy. Uplink
is ``ul_ratio`` times downlink on average, with its own spread per session,
state or device, so the two directions are correlated but not proportional.

* :class:`OnOffSessions`: superposed heavy-tailed ON/OFF sources (Willinger,
  Taqqu, Sherman and Wilson 1997; Crovella and Bestavros 1997).
* :class:`MarkovModulated`: a continuous-time Markov chain switching the mean
  rate, a fluid analogue of the MMPP (Heffes and Lucantoni 1986; Fischer and
  Meier-Hellstern 1993), with per-state log-normal noise.
* :class:`Telemetry`: constant-bit-rate devices joining and leaving (an
  M/G/infinity population), with jitter and clustered alarm bursts
  (Neyman-Scott cluster process).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from sims.heldout.timeline import (
    DiurnalClock,
    FloatArray,
    Pulses,
    interval_means,
    interval_sigma,
    lognormal_noise,
)


def _uplink(rng: np.random.Generator, dl: FloatArray, ul_ratio: float, sigma: float) -> FloatArray:
    """Stack downlink rates with uplink ones ``dl * ul_ratio * LogNormal(0, sigma)`` (mean 1)."""
    spread = lognormal_noise(rng, sigma, dl.shape)
    return np.stack([dl, dl * ul_ratio * spread], axis=1)


@dataclass(frozen=True)
class OnOffSessions:
    """``n_sources`` independent sources alternating OFF and ON.

    ON periods are Pareto (scale ``on_min_s``, shape ``on_alpha``, truncated at
    ``on_cap_s``); with ``1 < on_alpha < 2`` their variance is infinite and the
    superposition is asymptotically self-similar with Hurst parameter
    ``(3 - on_alpha) / 2`` up to the truncation time scale. OFF periods have
    mean ``off_mean_s``: exponential when ``off_alpha`` is None, else Pareto
    with that shape. Each ON period sends at its own rate, log-normal with
    median 1 and log-spread ``rate_sigma``. A session starts only with probability
    equal to the diurnal level (thinning), so nights are quieter and idler.
    Within a session the rate varies by log-normal noise ``jitter_sigma_10s``
    (short-range, Hurst 0.5).
    """

    n_sources: int
    on_min_s: float
    on_alpha: float
    on_cap_s: float
    off_mean_s: float
    off_alpha: float | None
    rate_sigma: float
    jitter_sigma_10s: float
    ul_spread_sigma: float = 0.3

    family: ClassVar[str] = "on-off"

    def mean_on_s(self) -> float:
        a, m, cap = self.on_alpha, self.on_min_s, self.on_cap_s
        # E[min(X, cap)] for Pareto(m, a): m a / (a - 1) - m^a cap^(1 - a) / (a - 1)
        return float(m * a / (a - 1.0) - m**a * cap ** (1.0 - a) / (a - 1.0))

    def _off(self, rng: np.random.Generator, shape: tuple[int, int]) -> FloatArray:
        if self.off_alpha is None:
            return rng.exponential(self.off_mean_s, shape)
        scale = self.off_mean_s * (self.off_alpha - 1.0) / self.off_alpha
        return scale * (1.0 + rng.pareto(self.off_alpha, shape))

    def pulses(
        self, horizon_s: float, clock: DiurnalClock, rng: np.random.Generator, ul_ratio: float
    ) -> Pulses:
        cycle = self.mean_on_s() + self.off_mean_s
        n_cycles = math.ceil(1.5 * horizon_s / cycle) + 8
        shape = (self.n_sources, n_cycles)
        while True:
            on = np.minimum(self.on_min_s * (1.0 + rng.pareto(self.on_alpha, shape)), self.on_cap_s)
            off = self._off(rng, shape)
            # a random phase per source, about one cycle back, so t = 0 is not a common start
            origin = -rng.uniform(0.0, 2.0 * cycle, (self.n_sources, 1))
            ends = origin + np.cumsum(on + off, axis=1)
            if np.all(ends[:, -1] >= horizon_s):
                break
            shape = (self.n_sources, 2 * shape[1])
        starts = (ends - on).ravel()
        ends = ends.ravel()
        inside = (ends > 0.0) & (starts < horizon_s)
        starts, ends = starts[inside], ends[inside]
        kept = clock.keep(np.maximum(starts, 0.0), rng)
        starts, ends = starts[kept], ends[kept]
        dl = np.exp(self.rate_sigma * rng.standard_normal(starts.size))
        return Pulses(starts, ends, _uplink(rng, dl, ul_ratio, self.ul_spread_sigma))

    def render(
        self,
        n_intervals: int,
        interval_s: float,
        clock: DiurnalClock,
        events_rng: np.random.Generator,
        noise_rng: np.random.Generator,
        ul_ratio: float,
    ) -> FloatArray:
        pulses = self.pulses(n_intervals * interval_s, clock, events_rng, ul_ratio)
        load = interval_means(pulses, n_intervals, interval_s)
        sigma = interval_sigma(self.jitter_sigma_10s, interval_s, 0.5)
        return load * lognormal_noise(noise_rng, sigma, load.shape)


@dataclass(frozen=True)
class MarkovModulated:
    """A continuous-time Markov chain over 2 to 4 states, each with its mean rate.

    State ``k`` holds for an exponential time of mean ``hold_mean_s[k]``, then
    jumps to state ``j`` with probability ``jump[k][j]`` (``jump[k][k] = 0``),
    sending at ``levels[k]`` meanwhile (uplink at ``ul_levels[k]`` relative to
    ``ul_ratio``). The rate is multiplied by the diurnal level at every interval
    and by log-normal noise whose log-spread at 10 s is ``noise_sigma_10s[k]``
    (time-weighted over the states an interval saw), scaled to other intervals
    as a long-range dependent process with Hurst parameter ``noise_hurst``.
    """

    levels: tuple[float, ...]
    ul_levels: tuple[float, ...]
    hold_mean_s: tuple[float, ...]
    jump: tuple[tuple[float, ...], ...]
    noise_sigma_10s: tuple[float, ...]
    noise_hurst: float = 0.8

    family: ClassVar[str] = "markov"

    def stationary(self) -> FloatArray:
        """Long-run share of time in each state."""
        jump = np.asarray(self.jump)
        generator = jump / np.asarray(self.hold_mean_s)[:, None]
        np.fill_diagonal(generator, -generator.sum(axis=1))
        k = len(self.levels)
        a = np.vstack([generator.T, np.ones(k)])
        b = np.zeros(k + 1)
        b[-1] = 1.0
        share = np.linalg.lstsq(a, b, rcond=None)[0]
        clipped: FloatArray = np.clip(share, 0.0, None)
        normalised: FloatArray = clipped / clipped.sum()
        return normalised

    def path(self, horizon_s: float, rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
        """Sojourn start times (the first at 0) and their states, up to the horizon."""
        cumulative = np.cumsum(np.asarray(self.jump), axis=1)
        state = int(rng.choice(len(self.levels), p=self.stationary()))
        t = 0.0
        starts: list[float] = []
        states: list[int] = []
        while t < horizon_s:
            starts.append(t)
            states.append(state)
            t += float(rng.exponential(self.hold_mean_s[state]))
            row = cumulative[state]
            state = min(
                int(np.searchsorted(row, rng.random() * row[-1], side="right")), len(row) - 1
            )
        return np.asarray(starts), np.asarray(states, dtype=np.float64)

    def render(
        self,
        n_intervals: int,
        interval_s: float,
        clock: DiurnalClock,
        events_rng: np.random.Generator,
        noise_rng: np.random.Generator,
        ul_ratio: float,
    ) -> FloatArray:
        horizon = n_intervals * interval_s
        starts, states = self.path(horizon, events_rng)
        ends = np.append(starts[1:], horizon)
        index = states.astype(np.int64)
        levels = np.stack(
            [np.asarray(self.levels)[index], ul_ratio * np.asarray(self.ul_levels)[index]], axis=1
        )
        load = interval_means(Pulses(starts, ends, levels), n_intervals, interval_s)
        sigma_10s = np.asarray(self.noise_sigma_10s)[index]
        sigma = interval_means(
            Pulses(starts, ends, np.stack([sigma_10s, sigma_10s], axis=1)), n_intervals, interval_s
        )
        scale = interval_sigma(1.0, interval_s, self.noise_hurst)
        load *= clock.interval_levels(n_intervals, interval_s)[:, None]
        return load * lognormal_noise(noise_rng, sigma * scale, load.shape)


@dataclass(frozen=True)
class Telemetry:
    """Constant-bit-rate devices with jitter and clustered alarm bursts.

    ``always_on_devices`` devices send all the time; more join as a Poisson
    process of ``joins_per_hour`` at the diurnal peak (thinned by the diurnal
    level) and stay for an exponential time of mean ``stay_mean_s``. Each device
    sends a constant rate, log-normal around 1 with log-spread ``device_sigma``.
    Jitter is independent per interval (Hurst 0.5), log-spread
    ``jitter_sigma_10s`` at 10 s. Alarms come in clusters: cluster centres are
    Poisson at ``alarm_clusters_per_hour``; each has ``1 + Poisson(followups_mean)``
    bursts placed exponentially ``cluster_spread_s`` after the centre; a burst
    lasts a log-normal time of median ``burst_median_s`` (log-spread 0.8) and adds
    ``burst_gain`` times the mean device load (times LogNormal(0, 0.5)).
    """

    always_on_devices: int
    joins_per_hour: float
    stay_mean_s: float
    device_sigma: float
    jitter_sigma_10s: float
    alarm_clusters_per_hour: float
    followups_mean: float
    cluster_spread_s: float
    burst_median_s: float
    burst_gain: float
    ul_spread_sigma: float = 0.15

    family: ClassVar[str] = "telemetry"

    def pulses(
        self, horizon_s: float, clock: DiurnalClock, rng: np.random.Generator, ul_ratio: float
    ) -> Pulses:
        always = np.exp(self.device_sigma * rng.standard_normal(self.always_on_devices))
        base = Pulses(
            np.zeros(always.size),
            np.full(always.size, horizon_s),
            _uplink(rng, always, ul_ratio, self.ul_spread_sigma),
        )
        lead_in = 5.0 * self.stay_mean_s  # devices that joined before the trace started
        n_joins = rng.poisson(self.joins_per_hour * (horizon_s + lead_in) / 3_600.0)
        join = rng.uniform(-lead_in, horizon_s, n_joins)
        join = join[clock.keep(np.maximum(join, 0.0), rng)]
        stay = rng.exponential(self.stay_mean_s, join.size)
        rate = np.exp(self.device_sigma * rng.standard_normal(join.size))
        joined = Pulses(join, join + stay, _uplink(rng, rate, ul_ratio, self.ul_spread_sigma))
        mean_devices = self.always_on_devices + self.joins_per_hour * self.stay_mean_s / 3_600.0
        n_clusters = rng.poisson(self.alarm_clusters_per_hour * horizon_s / 3_600.0)
        centres = rng.uniform(0.0, horizon_s, n_clusters)
        sizes = 1 + rng.poisson(self.followups_mean, n_clusters)
        burst_start = np.repeat(centres, sizes) + rng.exponential(
            self.cluster_spread_s, int(sizes.sum())
        )
        burst_len = self.burst_median_s * np.exp(0.8 * rng.standard_normal(burst_start.size))
        burst_rate = (
            self.burst_gain
            * max(mean_devices, 1.0)
            * np.exp(0.5 * rng.standard_normal(burst_start.size))
        )
        bursts = Pulses(
            burst_start,
            burst_start + burst_len,
            _uplink(rng, burst_rate, ul_ratio, self.ul_spread_sigma),
        )
        return Pulses.join([base, joined, bursts])

    def render(
        self,
        n_intervals: int,
        interval_s: float,
        clock: DiurnalClock,
        events_rng: np.random.Generator,
        noise_rng: np.random.Generator,
        ul_ratio: float,
    ) -> FloatArray:
        pulses = self.pulses(n_intervals * interval_s, clock, events_rng, ul_ratio)
        load = interval_means(pulses, n_intervals, interval_s)
        sigma = interval_sigma(self.jitter_sigma_10s, interval_s, 0.5)
        return load * lognormal_noise(noise_rng, sigma, load.shape)


TrafficModel = OnOffSessions | MarkovModulated | Telemetry
FAMILIES: tuple[str, ...] = ("on-off", "markov", "telemetry")
