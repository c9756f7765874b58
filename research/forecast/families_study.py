"""The fast ensemble with and without the traffic families, on dev traces:
``python -m research.forecast.families_study``.

Scores a checkpoint (``--model DIR``; the bundled one by default) with ``sliceai
evaluate``'s scoring (:func:`sliceai.forecast.evaluate.evaluate`: 16 steps, origins every
16 intervals, against seasonal naive, EWMA and the rolling quantile) on the dev traces:
the bundled scenarios on seeds 2001-2003 (:data:`research.forecast.traces.DEV` less the
stadium mix), their randomised variants (without the families), each also with a x1.4
load step half-way; ``--families`` adds the family-widened variants of the same seeds
(traffic of the kind the widened recipe trains on: reported apart). Each trace is scored
for the model alone and for the pool the service runs
(:func:`sliceai.planning.loading.pooled`), and the results go to ``--json``;
``--compare A.json B.json`` prints them side by side. The held-out family
(``sims/heldout``) and the assessment suite are never used here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from research.forecast.cached import Cached
from research.forecast.traces import DEV, generate_variant, stepped
from sliceai.forecast.evaluate import EvaluationOptions, baselines, evaluate
from sliceai.forecast.scenarios import generate_scenario
from sliceai.planning.loading import load_forecaster, pooled
from sliceai.traffic import Trace


def dev_traces(
    days: float, interval_s: float, families: bool = False, only: list[str] | None = None
) -> Iterator[tuple[str, Trace]]:
    """``(label, trace)`` of every dev trace (``only``: those labels)."""
    kinds = ["bundled", "variant"] + (["families"] if families else [])
    for name, seed in DEV:
        if "/" in name:  # the stadium mix: not a bundled scenario
            continue
        for kind in kinds:
            labels = [f"{name}:{seed} {kind}", f"{name}:{seed} {kind}, step"]
            if only is not None and not set(labels) & set(only):
                continue
            if kind == "bundled":
                base = generate_scenario(name, seed, days, interval_s)
            else:
                base = generate_variant(name, seed, days, interval_s, kind == "families")
            for label, trace in zip(labels, (base, stepped(base)), strict=True):
                if only is None or label in only:
                    yield label, trace


def summary(report: dict[str, Any]) -> dict[str, float]:
    """CRPS gain over the best baseline, 95 % coverage, 0.999 pinball over the rolling
    quantile's."""
    methods = report["methods"]
    pin = methods["sliceai"]["pinball"]["0.999"] / methods["rolling-quantile"]["pinball"]["0.999"]
    return {
        "crps_gain": float(report["crps_improvement"]),
        "coverage_95": float(methods["sliceai"]["coverage"]["0.95"]),
        "pinball_999_ratio": float(pin),
    }


def run(
    model: str | None,
    days: float,
    interval_s: float,
    families: bool,
    only: list[str] | None,
    threads: int,
) -> dict[str, Any]:
    alone = Cached(load_forecaster(model, device="cpu", threads=threads, pool=False))
    opts = EvaluationOptions(progress=False)
    rows: dict[str, Any] = {}
    for label, trace in dev_traces(days, interval_s, families, only):
        started = time.monotonic()
        compared = [Cached(b) for b in baselines()]
        rows[label] = {
            "alone": summary(evaluate(alone, [trace], opts, compared)),
            "pool": summary(evaluate(pooled(alone), [trace], opts, compared)),
        }
        cells = "  ".join(
            f"{w} {100 * r['crps_gain']:+5.1f}% {100 * r['coverage_95']:4.1f}% "
            f"{r['pinball_999_ratio']:4.2f}"
            for w, r in rows[label].items()
        )
        print(f"{label:32s} {cells}  ({time.monotonic() - started:.0f} s)", flush=True)
    return {"model": model or "bundled", "days": days, "interval_s": interval_s, "rows": rows}


def compare(paths: list[Path]) -> str:
    """Markdown tables (model alone, pool) of the runs in ``paths``, side by side, with
    the means over the rows they share (family-widened rows apart)."""
    runs = [json.loads(p.read_text()) for p in paths]
    names = [r["model"] for r in runs]
    labels = [k for k in runs[0]["rows"] if all(k in r["rows"] for r in runs)]
    out = []
    for which in ("alone", "pool"):
        out.append(f"\n{which}: CRPS gain over the best baseline / 95 % coverage / 0.999 pinball")
        out.append("over the rolling quantile's\n")
        out.append("| trace | " + " | ".join(names) + " |")
        out.append("|---|" + "---|" * len(names))
        for label in labels:
            cells = [_cell(r["rows"][label][which]) for r in runs]
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        for group, keep in (("dev", False), ("families", True)):
            chosen = [k for k in labels if ("families" in k) is keep]
            if chosen:
                cells = [_mean_cell([r["rows"][k][which] for k in chosen]) for r in runs]
                out.append(f"| mean, {group} ({len(chosen)}) | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _cell(r: dict[str, float]) -> str:
    gain, coverage, pinball = r["crps_gain"], r["coverage_95"], r["pinball_999_ratio"]
    return f"{100 * gain:+.1f}% {100 * coverage:.1f}% {pinball:.2f}"


def _mean_cell(rows: list[dict[str, float]]) -> str:
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    off = float(np.mean([abs(r["coverage_95"] - 0.95) for r in rows]))
    return _cell(mean) + f" (coverage off by {100 * off:.1f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", help="checkpoint directory (default: the bundled one)")
    parser.add_argument("--name", help="the model's name in the tables (default: --model)")
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--families", action="store_true", help="add the widened variants")
    parser.add_argument("--only", nargs="+", metavar="LABEL", help="only these traces")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--compare", type=Path, nargs="+", metavar="JSON")
    args = parser.parse_args(argv)
    if args.compare:
        print(compare(args.compare))
        return 0
    result = run(args.model, args.days, args.interval, args.families, args.only, args.threads)
    if args.name:
        result["model"] = args.name
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
