"""Choose the pool's settings on dev traces: ``python -m research.planning.pool_settings``.

Scores, with ``sliceai evaluate``'s scoring (:func:`sliceai.forecast.evaluate.evaluate`),
the model alone and pools of it with EWMA and the rolling quantile under several
(``eta``, prior, memory) settings, on the dev traces of the bundled scenarios (seeds
2001-2003, never used to train or for the held-out scores), on randomised variants of
them (traffic the model was not trained on) and on both with a x1.4 load step half-way.
The members' forecasts are computed once per trace and shared by the variants. The
held-out family under ``sims/heldout`` is never used here.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from research.forecast.cached import Cached
from research.forecast.traces import DEV, generate_variant
from sliceai.forecast.evaluate import EvaluationOptions, baselines, evaluate
from sliceai.forecast.scenarios import generate_scenario
from sliceai.planning import EwmaForecaster, PooledForecaster, RollingQuantileForecaster
from sliceai.planning.loading import load_forecaster

SETTINGS: Sequence[tuple[str, float, tuple[float, float, float] | None, float]] = (
    ("eta3 0.8 m200", 3.0, (0.8, 0.1, 0.1), 200.0),
    ("eta10 0.8 m200", 10.0, (0.8, 0.1, 0.1), 200.0),
    ("eta30 0.8 m200", 30.0, (0.8, 0.1, 0.1), 200.0),
    ("eta10 equal m200", 10.0, None, 200.0),
)


def summary(report: dict[str, object]) -> tuple[float, float, float]:
    """CRPS improvement, 95 % coverage, 0.999 pinball / the rolling quantile's."""
    methods = report["methods"]
    assert isinstance(methods, dict)
    pin = methods["sliceai"]["pinball"]["0.999"] / methods["rolling-quantile"]["pinball"]["0.999"]
    return (
        float(report["crps_improvement"]),  # type: ignore[arg-type]
        float(methods["sliceai"]["coverage"]["0.95"]),
        float(pin),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument("--interval", type=float, default=10.0)
    args = parser.parse_args()
    model = Cached(load_forecaster(None, "cpu", pool=False))
    ewma, rolling = Cached(EwmaForecaster()), Cached(RollingQuantileForecaster())
    opts = EvaluationOptions(progress=False)
    table: dict[str, list[float]] = {}
    for name, seed in DEV:
        if "/" in name:
            continue
        for kind in ("bundled", "variant"):
            make = generate_variant if kind == "variant" else generate_scenario
            base = make(name, seed, args.days, args.interval)
            for label, trace in ((f"{name}-{kind}", base),):
                compared = [Cached(b) for b in baselines()]
                results = [summary(evaluate(model, [trace], opts, compared))]
                for _, eta, prior, memory in SETTINGS:
                    pool = PooledForecaster([model, ewma, rolling], prior, eta, memory)
                    results.append(summary(evaluate(pool, [trace], opts, compared)))
                row = [r[0] for r in results]
                table[label] = row
                cells = " ".join(
                    f"{100 * c:+5.1f}% {100 * v:4.1f}% {p:4.2f} |" for c, v, p in results
                )
                print(f"{label:20s} {cells}", flush=True)
    print(
        "\ncolumns (CRPS gain, 95% coverage, 0.999 pinball / rolling): model alone, "
        + ", ".join(s[0] for s in SETTINGS)
    )
    means = np.mean(np.array(list(table.values())), axis=0)
    print("mean   " + " ".join(f"{100 * v:+6.1f}%" for v in means))


if __name__ == "__main__":
    main()
