"""Choose the planner's settings on dev traces: replay variants side by side.

``python -m research.planning.dev_replay [--days 1] [--interval 10] [--variants]`` replays
the dev traces (:data:`research.forecast.traces.DEV`: the bundled scenarios on seeds
never used for training or for the held-out scores, and with ``--variants`` randomised
variants of them) through the baselines and variants of the ``sliceai`` allocator
(model alone or pooled; risk control off, raising levels only, or both ways; the pool
without its calibration: ``uncalibrated``), and prints
per trace each allocator's cost relative to the cheapest baseline and the slices whose
violation rate is above their risk x 1.5. The held-out family under ``sims/heldout`` is
never used here.
"""

from __future__ import annotations

import argparse

import numpy as np

from research.forecast.traces import DEV, generate_variant
from sliceai.forecast.scenarios import generate_scenario
from sliceai.planning import (
    EwmaForecaster,
    Forecaster,
    PlannerSettings,
    PooledForecaster,
    RollingQuantileForecaster,
)
from sliceai.planning.loading import POOL_PRIOR, pooled
from sliceai.policy import load_policy
from sliceai.policy.bundled import bundled_policy_path
from sliceai.replay import PlannerAllocator, replay
from sliceai.replay.planned import model_forecaster

BASELINES = ("ewma", "rolling-quantile", "static", "proportional")


def variants() -> list[PlannerAllocator]:
    """The shipped planner (pool, backlog drained, risk control both ways: ``pool+drain+risk2``)
    and the alternatives it was chosen over (``pool+drain+risk``: the control raises levels
    only)."""
    model = model_forecaster(None, "cpu")
    plain = PlannerSettings(risk_control=False, drain_backlog=False)
    return [
        PlannerAllocator("model", model, plain),
        PlannerAllocator("pool", lambda: pooled(model), plain),
        PlannerAllocator("pool+drain", lambda: pooled(model), PlannerSettings(risk_control=False)),
        PlannerAllocator(
            "pool+drain+risk", lambda: pooled(model), PlannerSettings(risk_lowers=False)
        ),
        PlannerAllocator("pool+drain+risk2", lambda: pooled(model), PlannerSettings()),
        PlannerAllocator("uncalibrated", lambda: uncalibrated(model), PlannerSettings()),
    ]


def uncalibrated(model: Forecaster) -> PooledForecaster:
    """The shipped pool without its calibration of the pooled quantiles."""
    members = [model, EwmaForecaster(), RollingQuantileForecaster()]
    return PooledForecaster(members, POOL_PRIOR, calibration_step=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=float, default=1.0)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--variants", action="store_true", help="randomised variants too")
    parser.add_argument(
        "--only", nargs="*", default=None, help="the variants to replay (default all)"
    )
    parser.add_argument(
        "--scenarios", nargs="*", default=None, help="the scenarios to replay (default all)"
    )
    args = parser.parse_args()
    traces = []
    for name, seed in DEV:
        if "/" in name:  # the stadium mix has no policy of its own
            continue
        if args.scenarios is not None and name not in args.scenarios:
            continue
        traces.append((f"{name}:{seed}", name, seed, False))
        if args.variants:
            traces.append((f"{name} variant:{seed}", name, seed, True))
    totals: dict[str, list[float]] = {}
    for label, name, seed, variant in traces:
        make = generate_variant if variant else generate_scenario
        trace = make(name, seed, args.days, args.interval)
        policy = load_policy(bundled_policy_path(f"{name}.yaml"))
        chosen = [v for v in variants() if args.only is None or v.name in args.only]
        allocs: list[str | PlannerAllocator] = [*BASELINES, "oracle", *chosen]
        result = replay(trace, policy, allocs, trace_name=label, progress=False)
        metrics = {n: r.metrics for n, r in result.allocators.items()}
        costs = {n: m["total"]["cost"] for n, m in metrics.items()}
        cheapest = min(costs[b] for b in BASELINES)
        print(f"\n{label} ({trace.n_intervals} x {trace.interval_s:g} s, policy {policy.name})")
        for n, m in metrics.items():
            over = [
                f"{s}:{v['violation_rate'] * 100:.2f}%/{policy.slice(s).risk * 100:g}%"
                for s, v in m["slices"].items()
                if v["violation_rate"] > 1.5 * policy.slice(s).risk
            ]
            ratio = costs[n] / cheapest
            totals.setdefault(n, []).append(ratio)
            print(f"  {n:18s} cost/cheapest {ratio:6.3f}  over risk x1.5: {', '.join(over) or '-'}")
    print("\ngeometric mean of cost / cheapest baseline:")
    for name, ratios in totals.items():
        print(f"  {name:18s} {float(np.exp(np.mean(np.log(ratios)))):.3f}")


if __name__ == "__main__":
    main()
