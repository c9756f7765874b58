"""The fine-tuning recipe's dev study: ``python -m research.forecast.finetune_study``.

Each dev trace (:data:`DEV_TRACES`: randomised variants of the bundled scenarios, and
bundled scenarios, on seeds no checkpoint trained on; never the held-out family of
``sims/heldout``) is generated for ``--days`` (3) at ``--interval`` (10 s); the bundled
checkpoint is fine-tuned on all but the last day with each setting of
:data:`SETTINGS` (:class:`~sliceai.forecast.training.finetune.FinetuneOptions` fields) and
scored on the last day (:func:`~sliceai.forecast.training.holdout.score_crps`, each origin
reading the history before it), against the checkpoint as shipped. One JSON line per
run, then the mean gain per setting. ``experiments.md`` ("Fine-tuning on a site") has
the figures and the choice.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from research.forecast import randomized
from research.forecast.traces import generate_variant
from sliceai.forecast.pipeline import ForecastPipeline
from sliceai.forecast.scenarios import generate_scenario
from sliceai.forecast.training.finetune import FinetuneOptions, finetune_pipeline
from sliceai.forecast.training.holdout import score_crps
from sliceai.traffic import Trace

#: ``kind:scenario:seed`` (:func:`dev_trace`).
DEV_TRACES = (
    "variant:hospital:2001",
    "variant:factory:2002",
    "variant:campus:2003",
    "variant:hospital:2004",
    "scenario:factory:2002",
    "far-variant:hospital:2005",
    "far-variant:factory:2006",
    "far-variant:campus:2007",
)
#: The settings compared (each capped at :data:`MINUTES` of wall time); ``recipe`` is
#: :class:`FinetuneOptions`' defaults. (Rehearsal, half of each batch from the bundled
#: training traces, was measured with code since removed.)
_TAIL = {"validation": "tail", "keep_original": False}
SETTINGS: dict[str, dict[str, Any]] = {
    "tail, lr 3e-4": {**_TAIL, "learning_rate": 3e-4},
    "tail, lr 1e-4": {**_TAIL, "learning_rate": 1e-4},
    "tail, lr 1e-3": {**_TAIL, "learning_rate": 1e-3},
    "tail, lr 3e-4, no augmentation": {**_TAIL, "augment": False},
    "tail, lr 3e-4, 50-step epochs": {
        **_TAIL,
        "steps_per_epoch": 50,
        "epochs": 24,
        "patience": 5,
    },
    "blocks, tuned alone": {"validation": "blocks", "keep_original": False},
    "recipe": {},
}
MINUTES = 6.0


#: Perturbation ranges of :mod:`research.forecast.randomized` that ``far-variant``
#: traces widen (log ranges times :data:`FAR`, the sigma factor's range about 1 too).
FAR = 2.0
_RANGES = ("RATE_LOG_RANGE", "ARRIVAL_LOG_RANGE", "DURATION_LOG_RANGE", "CORR_LOG_RANGE")


def dev_trace(spec: str, days: float, interval_s: float) -> Trace:
    """``variant:NAME:SEED``, ``far-variant:NAME:SEED`` (a variant with the perturbation
    ranges widened :data:`FAR` times: a site further from the training data) or
    ``scenario:NAME:SEED``."""
    kind, name, seed = spec.split(":")
    if kind == "scenario":
        return generate_scenario(name, int(seed), days, interval_s)
    if kind == "variant":
        return generate_variant(name, int(seed), days, interval_s)
    saved = {k: getattr(randomized, k) for k in (*_RANGES, "SIGMA_FACTOR")}
    try:
        for k in _RANGES:
            setattr(randomized, k, FAR * saved[k])
        low, high = saved["SIGMA_FACTOR"]
        randomized.SIGMA_FACTOR = (low**FAR, high**FAR)
        return generate_variant(name, int(seed), days, interval_s)
    finally:
        for k, v in saved.items():
            setattr(randomized, k, v)


def run(
    traces: Sequence[str],
    settings: dict[str, dict[str, Any]],
    days: float = 3.0,
    interval_s: float = 10.0,
) -> list[dict[str, Any]]:
    """One record per (trace, setting), the shipped checkpoint's first (``gain`` is the
    relative CRPS reduction on the last day)."""
    base = ForecastPipeline.load(None, device="cpu")
    day = round(86400.0 / interval_s)
    records = []
    for spec in traces:
        trace = dev_trace(spec, days, interval_s)
        values = np.moveaxis(trace.load_bps, 0, -1).reshape(-1, trace.n_intervals)
        cut = trace.n_intervals - day
        shipped = score_crps(base, values, trace.start, interval_s, cut)
        records.append({"trace": spec, "setting": "shipped", "crps": shipped})
        print(json.dumps(records[-1]), flush=True)
        for label, fields in settings.items():
            options = FinetuneOptions(device="cpu", progress=False, minutes=MINUTES, **fields)
            started = time.monotonic()
            tuned, result = finetune_pipeline(base, [trace.window(0, cut)], options)
            seconds = time.monotonic() - started
            crps = score_crps(tuned, values, trace.start, interval_s, cut)
            members = [
                [m.initial_val_crps, m.best_val_crps, m.best_epoch, m.steps]
                for ens in result.ensembles.values()
                for m in ens.members
            ]
            records.append(
                {
                    "trace": spec,
                    "setting": label,
                    "crps": crps,
                    "gain": 1.0 - crps / shipped,
                    "seconds": round(seconds),
                    "members": members,
                }
            )
            print(json.dumps(records[-1]), flush=True)
    return records


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", nargs="*", default=list(DEV_TRACES))
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--days", type=float, default=3.0)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    records = run(args.traces, {k: SETTINGS[k] for k in args.settings}, args.days, args.interval)
    for label in args.settings:
        gains = [r["gain"] for r in records if r["setting"] == label]
        print(f"{label}: mean gain {100 * np.mean(gains):+.1f}% over {len(gains)} traces")
    return 0


if __name__ == "__main__":
    sys.exit(main())
