"""How much of the oracle's gain can the history reveal? A particle filter that knows the law.

``oracle.py`` bounds every forecaster with the generator's own conditional law, which
knows the latent state: the running sessions, their rates and ages, the noise. A
forecaster reads the load only. This filter sits between them on the slices that are
one ``sessions`` component with multiplicative AR(1) noise (no drift, no spikes, not
exclusive: ``consults``, ``firmware-bulk``, ``xr-sessions``): it knows the generator's
*law* (arrival intensity by time of day, the session-length and rate laws, the noise)
but not its draws, and infers the running sessions from the observed load alone, one
interval at a time. Its forecast is the law's future from the particles at each origin.

Particles hold up to :data:`SLOTS` sessions (rate, intervals run). Each interval:
running sessions end with the length law's hazard at their age; new sessions arrive
as Poisson starts, the first one's rate drawn near the rate the observation implies
(importance-weighted against the rate law); the weight is the noise's density of the
observed value given the particle's summed rate (given the AR state, the value fixes
the noise exactly), or its tail beyond the slice's cap where the cap clipped it.

    python sims/forecast/session_filter.py [--slice consults] [--interval 10] [--held-out]
        [--particles 3000] [--model bundled]

prints the CRPS gains over EWMA (scored as ``make evaluate`` scores: horizon 16, a
forecast every 16 intervals after the first 256, CRPS over each series' mean load,
averaged over series) of the filter, the oracle and optionally a model, by step.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
from generator_oracle import HORIZON, evaluation_origins, oracle_paths, replay_slice
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import log_ndtr, ndtr, ndtri
from scipy.stats import norm
from tabulate import tabulate
from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

from sliceai.forecast.baselines import ewma_gaussian
from sliceai.forecast.metrics import crps_ensemble
from sliceai.forecast.scenarios import DEV, HELD_OUT, START_EPOCH_S
from sliceai.traffic.generators import (
    Clock,
    generate,
    load_scenario,
    resolve_slices,
    session_intensity,
)
from sliceai.traffic.scenario_model import LogNormalSetting, Sessions, SliceSettings

Array = np.ndarray
#: Sessions a particle can hold at once.
SLOTS = 24
#: The data-driven proposal for a new session's rate is this much wider than the noise.
PROPOSAL_WIDTH = 1.2
#: Forecast steps (1-based) the report shows.
SHOWN_STEPS = (1, 2, 4, 8, 16)


class UnsupportedSlice(ValueError):
    """The slice is not one sessions component with plain AR(1) noise."""


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

    @classmethod
    def of(cls, settings: SliceSettings, clock: Clock, direction: int) -> SessionLaw:
        """The law of ``settings`` on ``clock``; :class:`UnsupportedSlice` if the filter
        does not model it."""
        comps = settings.components
        comp = comps[0] if len(comps) == 1 else None
        if not isinstance(comp, Sessions) or comp.exclusive or comp.drift or comp.spikes:
            raise UnsupportedSlice(
                f"{settings.name}: the filter models one non-exclusive sessions component "
                "with noise only"
            )
        if comp.noise is None or comp.noise.sigma <= 0:
            raise UnsupportedSlice(f"{settings.name}: the filter needs the noise to weigh by")
        sigma, corr = comp.noise.sigma, comp.noise.corr
        step = max(clock.dt, corr / 10.0)  # the generator's noise grid
        if step > clock.dt:
            raise UnsupportedSlice(f"{settings.name}: noise interpolated below the clock")
        return cls(
            intensity=session_intensity(comp, clock),
            hazard=length_hazard(comp.duration, clock.dt),
            rate=comp.rate,
            split=(comp.split.dl, comp.split.ul)[direction],
            sigma=sigma,
            phi=math.exp(-step / corr),
            cap=settings.cap,
        )

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


class SessionFilter:
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
            self._start(
                self.on, self.rates, self.age, rows, self.law.draw_rates(self.rng, len(rows))
            )
            ages = self.rng.choice(len(alive), len(rows), p=alive / alive.sum()) + 1
            slot = np.argmax(self.on[rows] & (self.age[rows] == 1), axis=1)
            self.age[rows, slot] = ages

    def _age_and_end(self, on: Array, age: Array) -> None:
        """One interval on: sessions end with the hazard at their age, the rest age."""
        h = self.law.hazard[np.minimum(age, len(self.law.hazard) - 1)]
        on &= ~(self.rng.random(on.shape) < h)
        age += on

    def _start(self, on: Array, rates: Array, age: Array, rows: Array, new: Array) -> None:
        """Start sessions of rates ``new`` in the first free slot of particles ``rows``
        (having run the interval they start in)."""
        slot = np.argmax(~on[rows], axis=1)
        free = ~on[rows, slot]
        rows, slot = rows[free], slot[free]
        on[rows, slot], rates[rows, slot], age[rows, slot] = True, new[free], 1

    def update(self, t: int, y: float) -> None:
        """Fold in the load ``y`` observed in interval ``t``."""
        law, rng = self.law, self.rng
        self._age_and_end(self.on, self.age)
        counts = rng.poisson(law.intensity[t], self.n)
        for k in range(int(counts.max(initial=0))):
            rows = np.flatnonzero(counts > k)
            new = law.draw_rates(rng, len(rows))
            if k == 0 and y > 0 and (law.cap is None or y < law.cap):
                new = self._propose(rows, y, new)
            self._start(self.on, self.rates, self.age, rows, new)
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


def filter_forecasts(
    values: Array, law: SessionLaw, origins: Array, particles: int, paths: int, seed: int
) -> Array:
    """``(len(origins), HORIZON, paths)``: the filter run over ``values`` from its start,
    forecasting at each origin from the intervals before it."""
    filt = SessionFilter(law, particles, np.random.default_rng(seed))
    out = np.empty((len(origins), HORIZON, paths))
    at = {int(o): i for i, o in enumerate(origins)}
    last = int(origins.max()) if len(origins) else -1
    for t in range(last + 1):
        if t in at:
            out[at[t]] = filt.forecast(t, HORIZON, paths)
        if t < last:
            filt.update(t, float(values[t]))
    return out


@dataclass
class Scores:
    """Per-step CRPS over one series' mean load ``(HORIZON,)`` of each method."""

    slice: str
    steps: dict[str, Array]


def score_trace(
    name: str, seed: int, wanted: set[str], args: argparse.Namespace, pipe: Any | None
) -> list[Scores]:
    """EWMA, the filter, the oracle (and the model) on the ``wanted`` slices of one trace."""
    scenario = load_scenario(name)
    n = round(args.days * 86400.0 / args.interval)
    trace = generate(
        scenario, start=START_EPOCH_S, n_intervals=n, interval_s=args.interval, seed=seed
    )
    clock = Clock(START_EPOCH_S, args.interval, n + HORIZON, scenario.utc_offset_h)
    past = Clock(START_EPOCH_S, args.interval, n, scenario.utc_offset_h)
    origins = evaluation_origins(n, args.interval)
    out = []
    for i, settings in enumerate(resolve_slices(scenario)):
        if settings.name not in wanted:
            continue
        SessionLaw.of(settings, clock, 0)  # UnsupportedSlice before any work
        states = replay_slice(settings, past, seed)
        for d in range(2):
            values = trace.load_bps[:, i, d].astype(np.float64)
            targets = sliding_window_view(values, HORIZON)[origins]
            scale = float(np.mean(np.abs(targets)))
            if scale == 0:
                continue
            law = SessionLaw.of(settings, clock, d)
            rng = np.random.default_rng(seed)
            ens = {
                "EWMA": ewma_gaussian(values, origins, HORIZON).ensemble,
                "filter": filter_forecasts(
                    values, law, origins, args.particles, args.paths, seed + d
                ),
                "oracle": oracle_paths(states, settings.cap, d, origins, args.paths, rng),
            }
            if pipe is not None:
                from sliceai.forecast.evaluate import (
                    EvaluationOptions,
                    _all_levels,
                    _model_forecast,
                )

                opts = EvaluationOptions(horizon=HORIZON, stride=HORIZON, progress=False)
                paths, _ = _model_forecast(pipe, trace, values, origins, _all_levels(), opts)
                ens["model"] = np.moveaxis(paths, 1, -1)
            steps = {k: crps_ensemble(e, targets).mean(axis=0) / scale for k, e in ens.items()}
            out.append(Scores(settings.name, steps))
    return out


def report(scores: list[Scores]) -> str:
    """Per slice: each method's gain over EWMA, over the horizon and at :data:`SHOWN_STEPS`."""
    methods = [m for m in scores[0].steps if m != "EWMA"]
    idx = [k - 1 for k in SHOWN_STEPS]
    rows = []
    for name in sorted({s.slice for s in scores}):
        group = [s for s in scores if s.slice == name]
        e = np.mean([s.steps["EWMA"] for s in group], axis=0)
        row: list[object] = [name, len(group)]
        for m in methods:
            c = np.mean([s.steps[m] for s in group], axis=0)
            gains = " ".join(f"{100 * (1 - c[k] / e[k]):+.0f}" for k in idx)
            row.append(f"{100 * (1 - c.mean() / e.mean()):+.1f}% ({gains})")
        rows.append(row)
    steps = ", ".join(str(k) for k in SHOWN_STEPS)
    headers = ["slice", "series", *(f"{m} vs EWMA (steps {steps})" for m in methods)]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--slice",
        nargs="+",
        default=["consults", "firmware-bulk", "xr-sessions"],
        help="sessions slices to score (one sessions component with noise only)",
    )
    parser.add_argument("--interval", type=float, default=10.0, help="clock, seconds")
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--particles", type=int, default=3000)
    parser.add_argument("--paths", type=int, default=100, help="sample paths per origin")
    parser.add_argument(
        "--held-out", action="store_true", help="the held-out traces (default: dev)"
    )
    parser.add_argument(
        "--model", default=None, help="also score a checkpoint ('bundled' or a directory)"
    )
    args = parser.parse_args(argv)
    if args.particles < 2 or args.paths < 2 or args.days <= 0 or args.interval <= 0:
        parser.error("--particles and --paths must be at least 2; --days and --interval positive")
    pipe = None
    if args.model is not None:
        import torch

        from sliceai.forecast.pipeline import ForecastPipeline

        torch.set_num_threads(2)
        pipe = ForecastPipeline.load(None if args.model == "bundled" else args.model, device="cpu")
    scores: list[Scores] = []
    traces = HELD_OUT if args.held_out else DEV
    for name, seed in tqdm(traces, desc=f"{args.interval:g} s traces", unit="trace"):
        try:
            scores += score_trace(name, seed, set(args.slice), args, pipe)
        except UnsupportedSlice as exc:
            parser.error(str(exc))
    if not scores:
        parser.error(
            f"none of {args.slice} is in the {'held-out' if args.held_out else 'dev'} traces"
        )
    print(report(scores))
    return 0


if __name__ == "__main__":
    sys.exit(main())
