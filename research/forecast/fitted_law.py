"""Per slice: what the session assist does, and its parts, against EWMA.

``session_filter.py`` shows that a filter that *knows* a sessions slice's law recovers
about half of what the model misses at 10 s. :mod:`research.forecast.session_assist` pools
the same filter, under a law fitted from the load alone (:mod:`research.forecast.session_fit`),
with the model where that has scored better. This script splits that up per slice: the
model alone, the fitted filter alone, the 50 / 50 pool at every origin, and the online
choice (what the assist forecasts).

    python -m research.forecast.fitted_law [--held-out] [--window 90] [--particles 1000]
        [--model bundled] [--seed 0]

prints per slice and in total the CRPS gain over EWMA of the four (about 15 minutes on
one core for the dev traces).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np
from tabulate import tabulate
from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

from research.forecast.ensembles import ewma_ensemble, model_paths
from research.forecast.generator_oracle import HORIZON, evaluation_origins, scored_directions
from research.forecast.session_assist import (
    SessionOptions,
    choose_online,
    pool_paths,
    session_paths,
)
from research.forecast.traces import DEV, HELD_OUT
from sliceai.forecast.metrics import crps_ensemble
from sliceai.forecast.scenarios import START_EPOCH_S
from sliceai.traffic.generators import Clock, generate, load_scenario, resolve_slices

Array = np.ndarray


def score_trace(
    name: str, seed: int, args: argparse.Namespace, pipe: Any
) -> list[tuple[str, dict[str, Array]]]:
    """Per series of one trace: per-origin CRPS over the series' mean load of each method."""
    scenario = load_scenario(name)
    dt = args.interval
    n = round(args.days * 86400.0 / dt)
    trace = generate(scenario, start=START_EPOCH_S, n_intervals=n, interval_s=dt, seed=seed)
    clock = Clock(START_EPOCH_S, dt, n + HORIZON)
    origins = evaluation_origins(n, dt)
    out = []
    for i, settings in enumerate(resolve_slices(scenario)):
        for d, values, targets, scale in scored_directions(trace.load_bps[:, i], origins):
            paths = model_paths(pipe, trace, values, origins, HORIZON)
            model = np.moveaxis(paths, 1, -1)
            options = SessionOptions(args.particles, args.window, seed + d + 10_000 * args.seed)
            filtered, have = session_paths(
                values, clock, origins, HORIZON, model.shape[-1] // 2, options
            )
            crps = {
                "EWMA": crps_ensemble(ewma_ensemble(values, origins, HORIZON), targets),
                "model": crps_ensemble(model, targets),
                "filter": crps_ensemble(
                    np.where(have[:, None, None], filtered, model[..., : filtered.shape[-1]]),
                    targets,
                ),
                "pool": crps_ensemble(pool_paths(model, filtered, have), targets),
            }
            per_origin = {k: v.mean(axis=1) / scale for k, v in crps.items()}
            use = choose_online(
                per_origin["pool"], per_origin["model"], origins, HORIZON, args.window
            )
            per_origin["chosen"] = np.where(use, per_origin["pool"], per_origin["model"])
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
