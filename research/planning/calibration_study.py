"""Choose the calibration step of the pooled quantiles on dev traces:
``python -m research.planning.calibration_study``.

Scores the pool the service runs (:func:`sliceai.planning.loading.pooled`) with
``sliceai evaluate``'s scoring under several :class:`~sliceai.planning.calibration.
QuantileTracker` steps (0: no calibration) on the dev traces of
:func:`research.forecast.families_study.dev_traces` (the bundled scenarios on seeds
2001-2003, their randomised variants and their family-widened variants: traffic the
bundled model was not trained on; without the x1.4 step rows, which this scoring scores
as their base rows). The members' forecasts are computed once per trace and shared by
every step. The held-out family (``sims/heldout``) and the assessment suite are never
used here.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from research.forecast.cached import Cached
from research.forecast.families_study import dev_traces, summary
from sliceai.forecast.evaluate import EvaluationOptions, baselines, evaluate
from sliceai.planning import EwmaForecaster, PooledForecaster, RollingQuantileForecaster
from sliceai.planning.loading import POOL_PRIOR, load_forecaster

STEPS = (0.0, 0.003, 0.01, 0.03)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--steps", type=float, nargs="+", default=list(STEPS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--only", nargs="+", metavar="LABEL", help="only these traces")
    args = parser.parse_args(argv)
    model = Cached(load_forecaster(None, device="cpu", threads=args.threads, pool=False))
    opts = EvaluationOptions(progress=False)
    rows: dict[str, dict[str, Any]] = {}
    for label, trace in dev_traces(args.days, args.interval, True, args.only):
        if label.endswith(", step"):
            continue
        started = time.monotonic()
        compared = [Cached(b) for b in baselines()]
        ewma, rolling = Cached(EwmaForecaster()), Cached(RollingQuantileForecaster())
        rows[label] = {}
        for step in args.steps:
            pool = PooledForecaster([model, ewma, rolling], POOL_PRIOR, calibration_step=step)
            rows[label][str(step)] = summary(evaluate(pool, [trace], opts, compared))
        cells = "  ".join(
            f"{s}: {100 * r['crps_gain']:+5.1f}% {100 * r['coverage_95']:4.1f}% "
            f"{r['pinball_999_ratio']:4.2f}"
            for s, r in rows[label].items()
        )
        print(f"{label:28s} {cells}  ({time.monotonic() - started:.0f} s)", flush=True)
    print("\nmean CRPS gain / 95 % coverage (mean |coverage - 95 %|) / 0.999 pinball ratio")
    for step in args.steps:
        got = [r[str(step)] for r in rows.values()]
        gain = np.mean([g["crps_gain"] for g in got])
        cov = np.mean([g["coverage_95"] for g in got])
        off = np.mean([abs(g["coverage_95"] - 0.95) for g in got])
        pin = np.mean([g["pinball_999_ratio"] for g in got])
        worst = max(g["pinball_999_ratio"] for g in got)
        print(
            f"step {step}: {100 * gain:+.2f}%  {100 * cov:.1f}% ({100 * off:.2f})  "
            f"{pin:.3f} (worst {worst:.2f})"
        )
    if args.json:
        args.json.write_text(json.dumps({"days": args.days, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
