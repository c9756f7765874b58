"""The bundled traffic generator replayed with its latent state, and its future simulated.

:mod:`sliceai.traffic.generators` draws a slice as components (level, sessions,
periodic, cyclic) times AR(1) noise plus spikes. :func:`replay_slice` makes the same
draws from the same random streams, through the generator's own draw functions
(``session_list``, ``regime_factor``, ``shift_levels``, ``ar_grid``, ``spike_hits``),
and keeps what they were: the sessions running and
when they began, the noise processes on their grids, past spikes, device-count regimes,
shift levels. :func:`oracle_paths` then samples the generator's future from that state
at each forecast origin, which is the exact conditional law of the load given
everything the generator has drawn so far:

- running sessions end after a duration drawn from the duration law *given* the
  time they have already run; new sessions arrive as the generator's Poisson
  process (one at a time where the component is exclusive);
- the noise and drift AR(1) processes continue from their state at the origin (where
  the generator interpolates a slow process between grid points, the next grid point
  is fixed by the past already, so the oracle knows it as any careful reader would);
- spikes arrive as the generator's Bernoulli process with Pareto sizes;
- device regimes and shift levels change at the generator's rate; a new shift draws
  a new level.

Used by :mod:`research.forecast.oracle` (the bound on any forecaster's CRPS) and tested in
``research/tests/test_oracle_bound.py``; :func:`reconstruct` rebuilds the trace from the
replay, the check that it is the generator's.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import ndtr, ndtri

from sliceai.traffic.generators import (
    Clock,
    ar_grid,
    calendar_factor,
    component_rng,
    periodic_messages_mean,
    regime_factor,
    session_intensity,
    session_list,
    session_rate,
    shift_levels,
    spike_hits,
    spike_probability,
)
from sliceai.traffic.scenario_model import (
    Cyclic,
    Level,
    LogNormalSetting,
    Noise,
    Periodic,
    Sessions,
    SliceSettings,
    Spikes,
)

#: Forecast steps per origin (``make evaluate``'s horizon).
HORIZON = 16
#: The evaluation's context: origins start after it (``ForecastPipeline`` default).
CONTEXT = 256


def evaluation_origins(n: int, interval_s: float) -> np.ndarray:
    """The forecast origins ``make evaluate`` scores on ``n`` intervals: every
    :data:`HORIZON` intervals once a forecaster reading :data:`CONTEXT` intervals and
    the baselines whose history fits have theirs (:func:`origins_for`)."""
    from sliceai.forecast.evaluate import EvaluationOptions, baselines, origins_for
    from sliceai.planning.baselines import RollingQuantileForecaster

    reader = RollingQuantileForecaster(CONTEXT)  # stands in for anything reading CONTEXT
    opts = EvaluationOptions(horizon=HORIZON, stride=HORIZON, progress=False)
    return origins_for(reader, baselines(), interval_s, n, opts)


def scored_directions(
    load: np.ndarray, origins: np.ndarray
) -> Iterator[tuple[int, np.ndarray, np.ndarray, float]]:
    """The directions of one slice's load ``(n, 2)`` that ``make evaluate`` scores:
    ``(direction, values, targets, scale)``, targets ``(len(origins), HORIZON)`` and
    their mean load (scores are divided by it); directions idle at every target skipped."""
    for d in range(load.shape[1]):
        values = np.asarray(load[:, d], dtype=np.float64)
        targets = sliding_window_view(values, HORIZON)[origins]
        scale = float(np.mean(np.abs(targets)))
        if scale > 0:
            yield d, values, targets, scale


Array = np.ndarray


@dataclass
class NoiseState:
    """One noise process as the generator drew it: the AR(1) on its own grid."""

    sigma: float
    per_interval: float  # grid steps per trace interval (1 where the grid is the clock)
    phi: float  # correlation from one grid step to the next
    gauss: Array  # (m, 2) unit-variance AR(1) on the grid

    def at(self, t: Array) -> Array:
        """The process at intervals ``t`` ``(k, 2)``, interpolated from the grid as the
        generator does."""
        pos = t * self.per_interval
        i0 = np.floor(pos).astype(np.int64)
        frac = (pos - i0)[:, None]
        i1 = np.minimum(i0 + 1, len(self.gauss) - 1)
        out: Array = self.gauss[i0] * (1.0 - frac) + self.gauss[i1] * frac
        return out


class KnownBase:
    """A base rate the calendar fixes (``level``): the same for the oracle as for the trace."""

    def __init__(self, base: Array) -> None:
        self.base = base

    def observed(self) -> tuple[Array, Array]:
        return self.base, np.ones(len(self.base), dtype=bool)

    def future(self, origins: Array, paths: int, rng: np.random.Generator) -> tuple[Array, Array]:
        b = _horizon(self.base, origins, paths)
        return b, np.ones(b.shape, dtype=bool)


class CyclicBase:
    """A level drawn uniformly per shift while the schedule runs: shifts not begun by the
    origin get fresh draws."""

    def __init__(self, comp: Cyclic, shift: Array, levels: Array, running: Array) -> None:
        self.comp, self.shift, self.levels, self.running = comp, shift, levels, running

    def _base(self, level: Array, running: Array) -> tuple[Array, Array]:
        base = np.where(running > 0, level * running, self.comp.idle)
        return base, base > self.comp.idle

    def observed(self) -> tuple[Array, Array]:
        return self._base(self.levels[self.shift], self.running)

    def future(self, origins: Array, paths: int, rng: np.random.Generator) -> tuple[Array, Array]:
        t = _steps(origins)
        ahead = self.shift[t] - self.shift[origins - 1][:, None]  # (o, h) shifts after the origin's
        draws = rng.uniform(self.comp.low, self.comp.high, (len(origins), paths, HORIZON + 1))
        draws[:, :, 0] = self.levels[self.shift[origins - 1]][:, None]
        level = np.take_along_axis(
            draws, np.broadcast_to(ahead[:, None, :], (len(origins), paths, HORIZON)), axis=2
        )
        return self._base(level, _horizon(self.running, origins, paths))


class PeriodicBase:
    """Poisson message counts from a device count that changes regime at random times."""

    def __init__(
        self, comp: Periodic, factor: Array, profile: Array, messages: Array, dt: float
    ) -> None:
        self.comp, self.factor, self.profile, self.messages = comp, factor, profile, messages
        self.bits = comp.message_bytes * 8.0 / dt  # bit/s per message in an interval
        self.per_device = dt / comp.period  # messages per device per interval
        self.change = comp.regimes_per_day * dt / 86400.0

    def observed(self) -> tuple[Array, Array]:
        return self.messages * self.bits, np.ones(len(self.messages), dtype=bool)

    def future(self, origins: Array, paths: int, rng: np.random.Generator) -> tuple[Array, Array]:
        shape = (len(origins), paths, HORIZON)
        factor = np.broadcast_to(self.factor[origins - 1][:, None, None], shape).copy()
        if self.change > 0:
            sigma = self.comp.regime_sigma
            fresh = np.exp(sigma * rng.standard_normal(shape) - sigma**2 / 2.0)
            changed = rng.random(shape) < self.change
            for h in range(HORIZON):  # a new regime holds until the next change
                prev = factor[:, :, h - 1] if h else factor[:, :, 0]
                factor[:, :, h] = np.where(changed[:, :, h], fresh[:, :, h], prev)
        lam = self.comp.devices * factor * _horizon(self.profile, origins, paths) * self.per_device
        return rng.poisson(lam) * self.bits, np.ones(shape, dtype=bool)


@dataclass
class SessionBase:
    """Sessions as the generator kept them, and the Poisson intensity of new ones."""

    comp: Sessions
    dt: float
    intensity: Array  # (n,) expected starts per interval on the trace clock
    starts: Array  # (k,) interval of each kept session (may be < 0: began before the trace)
    ends: Array  # (k,)
    rates: Array  # (k,)

    def observed(self) -> tuple[Array, Array]:
        n = len(self.intensity)  # sessions begun before the trace count from its start
        clip = np.clip(self.starts, 0, n), np.clip(self.ends, 0, n)
        base = session_rate(*clip, self.rates, n)
        return base, base > 0

    def future(self, origins: Array, paths: int, rng: np.random.Generator) -> tuple[Array, Array]:
        base = _future_sessions(self, origins, paths, self.dt, rng)
        return base, base > 0


@dataclass
class SpikeState:
    spikes: Spikes
    hits: Array  # (h,) intervals where a spike began
    sizes: Array  # (h,)
    length: int  # intervals
    prob: float  # chance that a spike begins in an interval


Base = KnownBase | CyclicBase | PeriodicBase | SessionBase


@dataclass
class ComponentState:
    """One component: its base rate (and where it is active), noise and spikes."""

    split: Array  # (2,) dl, ul
    base: Base
    noises: list[NoiseState]
    spikes: SpikeState | None


def replay_slice(settings: SliceSettings, clock: Clock, seed: int) -> list[ComponentState]:
    """The generator's draws for one slice, in its order (checked against ``slice_load``)."""
    states = []
    for k, comp in enumerate(settings.components):
        rng = component_rng(settings, k, seed)
        base: Base
        if isinstance(comp, Level):
            base = KnownBase(np.full(clock.n, comp.rate) * calendar_factor(comp, clock))
        elif isinstance(comp, Sessions):
            base = _replay_sessions(comp, clock, rng)
        elif isinstance(comp, Periodic):
            base = _replay_periodic(comp, clock, rng)
        else:
            base = _replay_cyclic(comp, clock, rng)
        noises = [_replay_noise(n, clock, rng) for n in (comp.noise, comp.drift) if n is not None]
        spikes = _replay_spikes(comp.spikes, clock, rng) if comp.spikes is not None else None
        split = np.array([comp.split.dl, comp.split.ul])
        states.append(ComponentState(split, base, noises, spikes))
    return states


def _replay_sessions(comp: Sessions, clock: Clock, rng: np.random.Generator) -> SessionBase:
    longest = comp.duration.max or comp.duration.median * math.exp(3.0 * comp.duration.sigma)
    pre = min(math.ceil(min(longest, 86400.0) / clock.dt), 10 * clock.n)
    ext = clock.earlier(pre) if pre > 0 else clock  # as the generator's _sessions
    starts, ends, rates = session_list(comp, ext, rng)
    intensity = session_intensity(comp, clock)
    return SessionBase(comp, clock.dt, intensity, starts - pre, ends - pre, rates)


def _replay_periodic(comp: Periodic, clock: Clock, rng: np.random.Generator) -> PeriodicBase:
    factor = regime_factor(comp, clock, rng)
    messages = rng.poisson(periodic_messages_mean(comp, clock, factor))
    return PeriodicBase(comp, factor, calendar_factor(comp, clock), messages, clock.dt)


def _replay_cyclic(comp: Cyclic, clock: Clock, rng: np.random.Generator) -> CyclicBase:
    shift, levels = shift_levels(comp, clock, rng)
    return CyclicBase(comp, shift, levels, calendar_factor(comp, clock))


def _replay_noise(noise: Noise, clock: Clock, rng: np.random.Generator) -> NoiseState:
    if noise.sigma == 0:
        return NoiseState(0.0, 1.0, 0.0, np.zeros((clock.n, 2)))
    gauss, step, phi = ar_grid(noise, clock, rng)
    return NoiseState(noise.sigma, 1.0 if step == clock.dt else clock.dt / step, phi, gauss)


def _replay_spikes(spikes: Spikes, clock: Clock, rng: np.random.Generator) -> SpikeState:
    hits, sizes, length = spike_hits(spikes, clock, rng)
    return SpikeState(spikes, hits, sizes, length, spike_probability(spikes, clock))


def _steps(origins: Array) -> Array:
    """The forecast intervals ``(o, HORIZON)`` of each origin."""
    out: Array = origins[:, None] + np.arange(HORIZON)[None, :]
    return out


def _horizon(values: Array, origins: Array, paths: int) -> Array:
    """``values`` over each origin's horizon, the same for every path ``(o, paths, HORIZON)``."""
    return np.broadcast_to(values[_steps(origins)][:, None, :], (len(origins), paths, HORIZON))


def reconstruct(states: list[ComponentState], cap: float | None) -> Array:
    """The slice's load ``(n, 2)`` rebuilt from the replayed state (checks the replay)."""
    total: Array | None = None
    for st in states:
        base, active = st.base.observed()
        rate = base[:, None] * st.split
        for ns in st.noises:
            rate = rate * np.exp(ns.sigma * ns.at(np.arange(len(base))) - ns.sigma**2 / 2.0)
        if st.spikes is not None:
            sp = st.spikes
            add = np.zeros(len(base) + sp.length)
            for j, size in zip(sp.hits.tolist(), sp.sizes.tolist(), strict=True):
                add[j : j + sp.length] += size
            rate = rate + (add[: len(base)] * active)[:, None] * st.split
        total = rate if total is None else total + rate
    assert total is not None
    return np.minimum(total, cap) if cap is not None else total


def oracle_paths(
    states: list[ComponentState],
    cap: float | None,
    direction: int,
    origins: Array,
    paths: int,
    rng: np.random.Generator,
) -> Array:
    """``(len(origins), HORIZON, paths)`` draws of the load given the state before each origin."""
    total = np.zeros((len(origins), paths, HORIZON))
    for st in states:
        base, active = st.base.future(origins, paths, rng)
        rate = base * st.split[direction]
        for ns in st.noises:
            if ns.sigma > 0:
                g = _future_noise(ns, direction, origins, paths, rng)
                rate = rate * np.exp(ns.sigma * g - ns.sigma**2 / 2.0)
        if st.spikes is not None:
            rate = (
                rate + _future_spikes(st.spikes, origins, paths, rng) * active * st.split[direction]
            )
        total += rate
    if cap is not None:
        np.minimum(total, cap, out=total)
    return np.moveaxis(total, 1, -1)


def _future_noise(
    ns: NoiseState, direction: int, origins: Array, paths: int, rng: np.random.Generator
) -> Array:
    """The AR(1) over the horizon ``(o, paths, HORIZON)``: the grid is known up to the
    first point the last observed interval needs and simulated after it."""
    known = np.ceil((origins - 1) * ns.per_interval).astype(np.int64)  # last known grid index
    width = HORIZON + 3  # grid indices known-1 .. known+HORIZON+1 cover every future interval
    grid = np.empty((len(origins), paths, width))
    grid[:, :, 0] = ns.gauss[known - 1, direction][:, None]
    grid[:, :, 1] = ns.gauss[known, direction][:, None]
    innov = math.sqrt(1.0 - ns.phi * ns.phi) * rng.standard_normal((len(origins), paths, width))
    for w in range(2, width):
        grid[:, :, w] = ns.phi * grid[:, :, w - 1] + innov[:, :, w]
    pos = (origins[:, None] + np.arange(HORIZON)[None, :]) * ns.per_interval  # (o, h)
    i0 = np.floor(pos).astype(np.int64)
    frac = (pos - i0)[:, None, :]
    w0 = (i0 - (known[:, None] - 1))[:, None, :].repeat(paths, axis=1)
    g0 = np.take_along_axis(grid, w0, axis=2)
    g1 = np.take_along_axis(grid, np.minimum(w0 + 1, width - 1), axis=2)
    out: Array = g0 * (1.0 - frac) + g1 * frac
    return out


def _future_spikes(sp: SpikeState, origins: Array, paths: int, rng: np.random.Generator) -> Array:
    """Spike load over the horizon ``(o, paths, HORIZON)`` before the ``active`` mask: the
    tails of spikes that began before the origin plus new Bernoulli/Pareto spikes."""
    shape = (len(origins), paths, HORIZON)
    new = np.where(
        rng.random(shape) < sp.prob,
        sp.spikes.scale * (1.0 + rng.pareto(sp.spikes.shape, shape)),
        0.0,
    )
    if sp.spikes.max is not None:
        np.minimum(new, sp.spikes.max, out=new)
    out = new.copy()
    for lag in range(1, sp.length):  # a spike begun lag intervals earlier is still on
        out[:, :, lag:] += new[:, :, :-lag]
    started = np.zeros(int(origins.max()) + 1)
    np.add.at(started, sp.hits[sp.hits <= origins.max()], sp.sizes[sp.hits <= origins.max()])
    for lag in range(1, sp.length):
        past = started[np.maximum(origins - lag, 0)] * (origins - lag >= 0)
        out[:, :, : sp.length - lag] += past[:, None, None]
    return out


def _lengths(
    setting: LogNormalSetting,
    dt: float,
    size: tuple[int, ...],
    rng: np.random.Generator,
    at_least: Array | None = None,
) -> Array:
    """Session lengths in intervals as the generator draws them, optionally given that a
    session has already run ``at_least`` intervals (the lognormal truncated below)."""
    if at_least is None or setting.sigma == 0:
        z = rng.standard_normal(size)
    else:  # inverse survival function above ``low``: exact far into the tail too
        low = np.log(np.maximum(at_least - 0.5, 1e-9) * dt / setting.median) / setting.sigma
        tail = ndtr(-low) * (1.0 - rng.random(size))  # in (0, P(Z > low)]
        with np.errstate(divide="ignore"):
            z = np.where(tail > 0, -ndtri(tail), low)
    x = setting.median * np.exp(setting.sigma * z)
    if setting.max is not None:
        np.minimum(x, setting.max, out=x)
    length: Array = np.maximum(1.0, np.round(x / dt))
    if at_least is not None:
        length = np.maximum(length, at_least)
    return length


def _future_sessions(
    ss: SessionBase, origins: Array, paths: int, dt: float, rng: np.random.Generator
) -> Array:
    """Summed session rate over the horizon ``(o, paths, HORIZON)``: the running sessions
    end after their remaining (conditional) duration, new ones arrive as Poisson starts."""
    comp = ss.comp
    steps = np.arange(HORIZON)
    out = np.zeros((len(origins), paths, HORIZON))
    busy_until = np.broadcast_to(origins[:, None], (len(origins), paths)).astype(np.float64).copy()
    # sessions running at each origin: start <= o - 1 < end
    for s, e, r in zip(ss.starts.tolist(), ss.ends.tolist(), ss.rates.tolist(), strict=True):
        lo, hi = np.searchsorted(origins - 1, [s, e])  # origins with s <= o - 1 < e
        if lo >= hi:
            continue
        rows = np.arange(lo, hi)
        ran = (origins[rows] - s).astype(np.float64)  # intervals run before the origin
        length = _lengths(comp.duration, dt, (len(rows), paths), rng, ran[:, None])
        end = s + length  # (rows, paths)
        on = (origins[rows, None, None] + steps[None, None, :]) < end[:, :, None]
        out[rows] += r * on
        busy_until[rows] = np.maximum(busy_until[rows], end)
    for h in range(HORIZON):
        lam = ss.intensity[origins + h]  # (o,)
        counts = rng.poisson(np.broadcast_to(lam[:, None], busy_until.shape))
        t = (origins + h)[:, None]
        if comp.exclusive:
            counts = np.where(t >= busy_until, np.minimum(counts, 1), 0)
        for k in range(int(counts.max(initial=0))):
            new = counts > k
            length = _lengths(comp.duration, dt, new.shape, rng)
            rate = comp.rate.median * np.exp(comp.rate.sigma * rng.standard_normal(new.shape))
            if comp.rate.max is not None:
                np.minimum(rate, comp.rate.max, out=rate)
            on = (steps[None, None, :] >= h) & (steps[None, None, :] < h + length[:, :, None])
            out += np.where(new[:, :, None] & on, rate[:, :, None], 0.0)
            if comp.exclusive:
                busy_until = np.where(new, t + length, busy_until)
    return out
