"""How much of the oracle's gain can the history reveal? A particle filter that knows the law.

``research.forecast.oracle`` bounds every forecaster with the generator's own conditional law, which
knows the latent state: the running sessions, their rates and ages, the noise. A
forecaster reads the load only. This filter sits between them on the slices that are
one ``sessions`` component with multiplicative AR(1) noise (no drift, no spikes, not
exclusive: ``consults``, ``firmware-bulk``, ``xr-sessions``): it knows the generator's
*law* (arrival intensity by time of day, the session-length and rate laws, the noise)
but not its draws, and infers the running sessions from the observed load alone, one
interval at a time. Its forecast is the law's future from the particles at each origin.
The filter is :class:`research.forecast.sessions.SessionParticleFilter`; here it is
given the generator's law (:func:`known_law`) instead of one fitted from the load.

    python -m research.forecast.session_filter [--slice consults] [--interval 10] [--held-out]
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
from tabulate import tabulate
from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

from research.forecast.ensembles import ewma_ensemble, model_paths
from research.forecast.generator_oracle import (
    HORIZON,
    evaluation_origins,
    oracle_paths,
    replay_slice,
    scored_directions,
)
from research.forecast.sessions import SessionLaw, SessionParticleFilter, length_hazard
from research.forecast.traces import DEV, HELD_OUT
from sliceai.forecast.metrics import crps_ensemble
from sliceai.forecast.scenarios import START_EPOCH_S
from sliceai.traffic.generators import (
    Clock,
    generate,
    load_scenario,
    resolve_slices,
    session_intensity,
)
from sliceai.traffic.scenario_model import Sessions, SliceSettings

Array = np.ndarray
#: Forecast steps (1-based) the report shows.
SHOWN_STEPS = (1, 2, 4, 8, 16)


class UnsupportedSlice(ValueError):
    """The slice is not one sessions component with plain AR(1) noise."""


def known_law(settings: SliceSettings, clock: Clock, direction: int) -> SessionLaw:
    """The law of ``settings`` on ``clock`` as the generator runs it; :class:`UnsupportedSlice`
    if the filter does not model the slice."""
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
    return SessionLaw(
        intensity=session_intensity(comp, clock),
        hazard=length_hazard(comp.duration, clock.dt),
        rate=comp.rate,
        split=(comp.split.dl, comp.split.ul)[direction],
        sigma=sigma,
        phi=math.exp(-step / corr),
        cap=settings.cap,
    )


def filter_forecasts(
    values: Array, law: SessionLaw, origins: Array, particles: int, paths: int, seed: int
) -> Array:
    """``(len(origins), HORIZON, paths)``: the filter run over ``values`` from its start,
    forecasting at each origin from the intervals before it."""
    filt = SessionParticleFilter(law, particles, np.random.default_rng(seed))
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
        known_law(settings, clock, 0)  # UnsupportedSlice before any work
        states = replay_slice(settings, past, seed)
        for d, values, targets, scale in scored_directions(trace.load_bps[:, i], origins):
            law = known_law(settings, clock, d)
            rng = np.random.default_rng(seed)
            ens = {
                "EWMA": ewma_ensemble(values, origins, HORIZON),
                "filter": filter_forecasts(
                    values, law, origins, args.particles, args.paths, seed + d
                ),
                "oracle": oracle_paths(states, settings.cap, d, origins, args.paths, rng),
            }
            if pipe is not None:
                paths = model_paths(pipe, trace, values, origins, HORIZON)
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
