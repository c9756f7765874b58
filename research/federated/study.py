"""Federated vs local-only vs central fine-tuning of the bundled network on four sites.

Four sites with different traffic mixes (bundled hospital, factory and campus scenarios on
new seeds, and a randomised campus variant with the generic families laid over it,
``research.forecast.traces.generate_variant``), each ``--days`` at 60 s: all but the last
day train, the last day is held out. Every model continues network 0 of the bundled main
ensemble with the project's training step and joins it to the bundled four (as
``sliceai train --init`` and ``sliceai federate`` write it):

- ``federated``: ``sliceai.federated.simulate`` (Flower, SecAgg+), ``--rounds`` rounds of
  ``--steps`` batches per site;
- ``local``: each site alone, the same ``rounds x steps`` batches on its own data;
- ``central``: one model on the pooled training data, ``sites x rounds x steps`` batches
  (the federation's total);
- ``personalised``: the federated model, then the local-only budget on the site's own
  data (what a site gets from ``sliceai federate`` followed by ``sliceai train --init``).

``--mix families`` gives every site traffic the bundled network was not trained on
instead: a randomised variant of the hospital, factory, campus and campus scenarios
(seeds 3101-3104) with the generic traffic families laid over each (each site its own
families: ON/OFF sessions, bursts, steps, phase shifts, full-buffer flows, drawn per
seed), so that local fine-tuning has something to learn and little data per site to
learn it from (``--days 2``: one day to train). These are dev-side generators
(``research/forecast``), never the held-out family of ``sims/heldout``.

Score: scale-free CRPS of the held-out day (``score_crps``: horizon 16, every 16
intervals, exact mixture quantiles), per site. Run:
``python -m research.federated.study --out research/federated/results``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from research.forecast.traces import generate_variant
from sliceai.federated.local import LocalOptions, SiteTrainer, assemble, get_arrays, network
from sliceai.federated.simulate import Site, simulate
from sliceai.forecast.pipeline import ForecastPipeline
from sliceai.forecast.scenarios import generate_scenario
from sliceai.forecast.training.holdout import score_crps
from sliceai.traffic import Trace
from sliceai.traffic.longcsv import write_long_csv

SITES = (("hospital", 3001), ("factory", 3002), ("campus", 3003), ("campus-variant", 3004))
#: ``--mix families``: (site, scenario, seed), every site a family-widened variant.
FAMILY_SITES = (
    ("hospital-families", "hospital", 3101),
    ("factory-families", "factory", 3102),
    ("campus-families", "campus", 3103),
    ("campus-families-2", "campus", 3104),
)


def site_traces(mix: str, days: float) -> dict[str, Trace]:
    if mix == "families":
        return {
            site: generate_variant(name, seed, days, 60.0, families=True)
            for site, name, seed in FAMILY_SITES
        }
    return {
        name: generate_variant("campus", seed, days, 60.0, families=True)
        if name == "campus-variant"
        else generate_scenario(name, seed, days, 60.0)
        for name, seed in SITES
    }


def split(trace: Trace, test_intervals: int) -> Trace:
    n = trace.n_intervals - test_intervals
    return Trace(trace.start, trace.interval_s, trace.slices, trace.load_bps[:n].copy())


def score(pipeline: ForecastPipeline, trace: Trace, test_intervals: int) -> float:
    values = np.moveaxis(trace.load_bps, 0, -1).reshape(-1, trace.n_intervals)
    first = trace.n_intervals - test_intervals
    return score_crps(pipeline, values, trace.start, trace.interval_s, first)


def train_alone(
    traces: list[Trace],
    pipeline: ForecastPipeline,
    opts: LocalOptions,
    rounds: int,
    start: list[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """``rounds`` x ``opts.local_steps`` steps on ``traces`` alone from ``start`` (default
    network 0 of ``pipeline``)."""
    trainer = SiteTrainer(traces, pipeline, 0, opts)
    arrays = get_arrays(network(pipeline, "main", 0)) if start is None else start
    for r in range(1, rounds + 1):
        arrays = trainer.fit(arrays, r, rounds)
    return arrays


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("research/federated/results"))
    ap.add_argument("--days", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument(
        "--proximal-mu", type=float, default=0.0, help="FedProx for the federated model only"
    )
    ap.add_argument("--mix", choices=("bundled", "families"), default="bundled")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    test = 1440  # the last day at 60 s
    full = site_traces(args.mix, args.days)
    train = {name: split(t, test) for name, t in full.items()}
    sites = []
    for name, t in train.items():
        path = args.out / f"{name}-train.csv"
        write_long_csv(t, path)
        sites.append(Site(name, (path,)))
    base = ForecastPipeline.load(None, device="cpu")
    opts = LocalOptions(local_steps=args.steps, batch_size=args.batch_size, seed=0)
    timings = {}

    t0 = time.monotonic()
    fed_opts = dataclasses.replace(opts, proximal_mu=args.proximal_mu)
    fed = simulate(sites, args.rounds, out=args.out / "federated-model", local=fed_opts)
    timings["federated"] = time.monotonic() - t0
    models = {"bundled": base, "federated": assemble(base, "main", fed.arrays[args.rounds])}

    t0 = time.monotonic()
    central_opts = LocalOptions(
        local_steps=args.steps * len(sites), batch_size=args.batch_size, seed=0
    )
    models["central"] = assemble(
        base, "main", train_alone(list(train.values()), base, central_opts, args.rounds)
    )
    timings["central"] = time.monotonic() - t0

    rows = {}
    t0 = time.monotonic()
    for name, t in full.items():
        local = assemble(base, "main", train_alone([train[name]], base, opts, args.rounds))
        own = train_alone([train[name]], base, opts, args.rounds, fed.arrays[args.rounds])
        rows[name] = {
            "bundled": score(models["bundled"], t, test),
            "local": score(local, t, test),
            "federated": score(models["federated"], t, test),
            "central": score(models["central"], t, test),
            "personalised": score(assemble(base, "main", own), t, test),
        }
    timings["local+scoring"] = time.monotonic() - t0
    for r in rows.values():
        r["federated_vs_local"] = r["federated"] / r["local"] - 1.0
        r["federated_vs_central"] = r["federated"] / r["central"] - 1.0
        r["personalised_vs_local"] = r["personalised"] / r["local"] - 1.0
    report = {
        "size": {
            "mix": args.mix,
            "sites": list(full),
            "days": args.days,
            "interval_s": 60.0,
            "test": "last day",
            "rounds": args.rounds,
            "steps_per_round": args.steps,
            "batch_size": args.batch_size,
            "proximal_mu": args.proximal_mu,
        },
        "crps": rows,
        "seconds": timings,
        "federation": fed.summary(),
    }
    (args.out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    print(
        f"{'site':16} {'bundled':>8} {'local':>8} {'fed':>8} {'central':>8} {'pers':>8} "
        "fed/local fed/central pers/local"
    )
    for name, r in rows.items():
        print(
            f"{name:16} {r['bundled']:8.4f} {r['local']:8.4f} {r['federated']:8.4f} "
            f"{r['central']:8.4f} {r['personalised']:8.4f} {100 * r['federated_vs_local']:+7.1f}% "
            f"{100 * r['federated_vs_central']:+7.1f}% {100 * r['personalised_vs_local']:+7.1f}%"
        )
    print(json.dumps(timings))


if __name__ == "__main__":
    main()
