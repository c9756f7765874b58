"""The session filter with a law fitted from the series' own past, pooled with the model.

``session_filter.py`` shows that a filter that *knows* a sessions slice's law recovers
about half of what the model misses at 10 s. No forecaster of a user's trace knows the
law; this prototype fits one from the load alone and measures what is left:

- :func:`fit_law` reads the load as Poisson sessions (an M/G/inf queue with lognormal
  lengths and rates, times AR(1) noise): the noise from the log differences, the mean
  length from the shape of the variogram over the busiest hours (``E[min(L, k)] / E[L]``),
  the mean rate from variance over mean, the arrival intensity from the level by hour of
  day (led by half a session) and by weekday once a whole one is seen. Refitted daily.
- the filter's 100 paths are pooled 50 / 50 with the model's, and at each origin the
  forecaster is the pool where its CRPS over the last ``--window`` origins (targets
  already seen) is below the model's, else the model alone.

    python sims/forecast/fitted_law.py [--held-out] [--window 90] [--particles 1000]
        [--model bundled] [--seed 0]

prints per slice and in total the CRPS gain over EWMA of the model, the fitted filter,
the pool and the online choice (about 20 minutes on 2 cores for the dev traces).
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

import numpy as np
from generator_oracle import HORIZON, evaluation_origins
from numpy.lib.stride_tricks import sliding_window_view
from session_filter import SessionFilter, SessionLaw, length_hazard
from tabulate import tabulate
from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

from sliceai.forecast.baselines import ewma_gaussian
from sliceai.forecast.metrics import crps_ensemble
from sliceai.forecast.scenarios import DEV, HELD_OUT, START_EPOCH_S
from sliceai.traffic.generators import Clock, generate, load_scenario, resolve_slices
from sliceai.traffic.scenario_model import LogNormalSetting

Array = np.ndarray
#: Variogram lags (intervals) the length fit reads.
MAX_LAG = 720
#: Assumed log-space spread of session rates (the moments do not separate it).
RATE_SIGMA = 0.4
#: Refit the law every this many seconds.
REFIT_S = 86400.0
#: A fitted law with more expected starts per interval than this is not a sessions slice.
MAX_STARTS = 2.0


def _length_shape(median_s: float, sigma: float, lags: Array, dt: float) -> Array:
    """``E[min(L, k)] / E[L]`` at ``lags`` for lognormal lengths rounded to intervals."""
    z = np.linspace(-4.0, 4.0, 161)
    w = np.exp(-0.5 * z * z)
    w /= w.sum()
    length = np.maximum(1.0, np.round(median_s * np.exp(sigma * z) / dt))
    out: Array = (np.minimum(length[None, :], lags[:, None]) * w).sum(axis=1) / (length * w).sum()
    return out


def fit_law(values: Array, clock: Clock, end: int) -> SessionLaw | None:
    """The law of ``values[:end]`` read as Poisson sessions (see the module docstring);
    None where the past holds no load or no plausible sessions law."""
    x, dt = values[:end], clock.dt
    hour = np.floor(clock.hour[:end]).astype(np.int64)
    weekday = clock.weekday[:end]
    by_hour = np.bincount(hour, weights=x, minlength=24) / np.maximum(
        np.bincount(hour, minlength=24), 1
    )
    if by_hour.max() <= 0 or np.sum(x > 0) < 100:
        return None
    busiest = (by_hour >= 0.5 * by_hour.max())[hour]
    mean, var = float(x[busiest].mean()), float(x[busiest].var())
    # noise: log differences of busy neighbours (robust spread, lag-1 correlation)
    busy = x > 0
    dlog = np.diff(np.log(np.where(busy, x, 1.0)))
    pair = busy[1:] & busy[:-1]
    d = dlog[pair]
    both = pair[:-1] & pair[1:]
    c1 = np.corrcoef(np.clip(dlog[:-1][both], -0.6, 0.6), np.clip(dlog[1:][both], -0.6, 0.6))[0, 1]
    phi = float(np.clip(1.0 + 2.0 * c1, 0.0, 0.95))
    mad = 1.4826 * float(np.median(np.abs(d - np.median(d))))
    sigma = max(mad / math.sqrt(2.0 * (1.0 - phi)), 0.02)
    noise_var = float(np.mean(x[busiest] ** 2)) * (1.0 - math.exp(-sigma * sigma))
    # lengths: the variogram of the sessions' sum rises as E[min(L, k)]
    lags = np.arange(1, MAX_LAG + 1)
    vario = np.full(MAX_LAG, np.nan)
    for j, k in enumerate(lags):
        ok = busiest[:-k] & busiest[k:]
        if ok.sum() > 50:
            vario[j] = np.mean((x[k:][ok] - x[:-k][ok]) ** 2)
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
    overall = float(x[np.isin(weekday, whole)].mean()) if whole else 0.0
    for w in whole:
        factor[w] = float(x[weekday == w].mean()) / overall if overall > 0 else 1.0
    intensity = profile * factor[clock.weekday] * per_level
    if intensity.max() > MAX_STARTS:
        return None
    top = median_s * math.exp(3.0 * sigma_l)
    return SessionLaw(
        intensity=intensity,
        hazard=length_hazard(LogNormalSetting(median=median_s, sigma=sigma_l, max=top), dt),
        rate=LogNormalSetting(median=rate_median, sigma=RATE_SIGMA, max=None),
        split=1.0,
        sigma=sigma,
        phi=phi,
        cap=None,
    )


def fitted_forecasts(
    values: Array, clock: Clock, origins: Array, particles: int, paths: int, seed: int
) -> Array | None:
    """``(len(origins), HORIZON, paths)`` from the filter under a law fitted on the past
    before the first origin and refitted daily; None if no law fits there."""
    first, last = int(origins[0]), int(origins[-1])
    law = fit_law(values, clock, first)
    if law is None:
        return None
    filt = SessionFilter(law, particles, np.random.default_rng(seed))
    out = np.empty((len(origins), HORIZON, paths))
    at = {int(o): i for i, o in enumerate(origins)}
    every = round(REFIT_S / clock.dt)
    for t in range(last + 1):
        if t > first and (t - first) % every == 0:
            filt.law = fit_law(values, clock, t) or filt.law
        if t in at:
            out[at[t]] = filt.forecast(t, HORIZON, paths)
        if t < last:
            filt.update(t, float(values[t]))
    return out


def choose_online(pool: Array, model: Array, window: int) -> Array:
    """Per origin: the pool's CRPS where it beat the model's over the previous
    ``window`` origins (at least 5 of them), else the model's."""
    cp, cm = np.concatenate([[0.0], np.cumsum(pool)]), np.concatenate([[0.0], np.cumsum(model)])
    out = model.copy()
    for j in range(len(model)):
        lo = max(0, j - window)
        if j - lo >= 5 and cp[j] - cp[lo] < cm[j] - cm[lo]:
            out[j] = pool[j]
    return out


def score_trace(
    name: str, seed: int, args: argparse.Namespace, pipe: Any
) -> list[tuple[str, dict[str, Array]]]:
    """Per series of one trace: per-origin CRPS over the series' mean load of each method."""
    from sliceai.forecast.evaluate import EvaluationOptions, _all_levels, _model_forecast

    scenario = load_scenario(name)
    dt = args.interval
    n = round(args.days * 86400.0 / dt)
    trace = generate(scenario, start=START_EPOCH_S, n_intervals=n, interval_s=dt, seed=seed)
    clock = Clock(START_EPOCH_S, dt, n + HORIZON, scenario.utc_offset_h)
    origins = evaluation_origins(n, dt)
    opts = EvaluationOptions(horizon=HORIZON, stride=HORIZON, progress=False)
    out = []
    for i, settings in enumerate(resolve_slices(scenario)):
        for d in range(2):
            values = trace.load_bps[:, i, d].astype(np.float64)
            targets = sliding_window_view(values, HORIZON)[origins]
            scale = float(np.mean(np.abs(targets)))
            if scale == 0:
                continue
            paths, _ = _model_forecast(pipe, trace, values, origins, _all_levels(), opts)
            model = np.moveaxis(paths, 1, -1)
            fitted = fitted_forecasts(
                values, clock, origins, args.particles, 100, seed + d + 10_000 * args.seed
            )
            half = model.shape[-1] // 2
            pool = (
                model
                if fitted is None
                else np.concatenate([fitted[..., :50], model[..., :half]], -1)
            )
            crps = {
                "EWMA": crps_ensemble(ewma_gaussian(values, origins, HORIZON).ensemble, targets),
                "model": crps_ensemble(model, targets),
                "filter": crps_ensemble(model if fitted is None else fitted, targets),
                "pool": crps_ensemble(pool, targets),
            }
            per_origin = {k: v.mean(axis=1) / scale for k, v in crps.items()}
            per_origin["chosen"] = choose_online(
                per_origin["pool"], per_origin["model"], args.window
            )
            out.append((settings.name, per_origin))
    return out


def report(series: list[tuple[str, dict[str, Array]]]) -> str:
    methods = ["model", "filter", "pool", "chosen"]

    def gain(group: list[dict[str, Array]], m: str, digits: int = 1) -> str:
        e = np.mean([s["EWMA"].mean() for s in group])
        return f"{100.0 * (1.0 - np.mean([s[m].mean() for s in group]) / e):+.{digits}f}%"

    rows = [
        [name, *(gain([s for n, s in series if n == name], m) for m in methods)]
        for name in sorted({n for n, _ in series})
    ]
    rows.append(["all", *(gain([s for _, s in series], m, 2) for m in methods)])
    return tabulate(rows, headers=["slice", *methods], tablefmt="github", disable_numparse=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--interval", type=float, default=10.0, help="clock, seconds")
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--particles", type=int, default=1000)
    parser.add_argument("--window", type=int, default=90, help="origins the online choice reads")
    parser.add_argument(
        "--held-out", action="store_true", help="the held-out traces (default: dev)"
    )
    parser.add_argument("--model", default="bundled", help="'bundled' or a checkpoint directory")
    parser.add_argument("--seed", type=int, default=0, help="offsets the filter's random draws")
    args = parser.parse_args(argv)
    if args.particles < 2 or args.window < 5 or args.days <= 1 or args.interval <= 0:
        parser.error("--particles >= 2, --window >= 5, --days > 1, --interval > 0")
    import torch

    from sliceai.forecast.pipeline import ForecastPipeline

    torch.set_num_threads(1)
    pipe = ForecastPipeline.load(None if args.model == "bundled" else args.model, device="cpu")
    series: list[tuple[str, dict[str, Array]]] = []
    for name, seed in tqdm(HELD_OUT if args.held_out else DEV, unit="trace"):
        series += score_trace(name, seed, args, pipe)
    print(report(series))
    return 0


if __name__ == "__main__":
    sys.exit(main())
