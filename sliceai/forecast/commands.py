"""``sliceai train``, ``forecast``, ``generate`` and ``evaluate``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

DEVICE_HELP = "auto (CUDA when present), cpu or cuda"
SCENARIO_HELP = "bundled scenario as NAME:SEED[:DAYS] (generated in memory; default 7 days)"


def register(subparsers: Any) -> None:
    train = subparsers.add_parser("train", help="train the generative traffic model on traces")
    _add_sources(train)
    train.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="checkpoint directory"
    )
    train.add_argument("--epochs", type=int, default=30)
    train.add_argument("--steps", type=int, default=150, help="batches per epoch")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="auto", help=DEVICE_HELP)
    train.add_argument("--resume", action="store_true", help="continue the run saved in DIR")
    train.set_defaults(func=_train)

    fc = subparsers.add_parser(
        "forecast", help="forecast the intervals after a trace (quantiles, fan chart)"
    )
    fc.add_argument("trace", type=Path, metavar="TRACE", help="long CSV trace")
    fc.add_argument("--horizon", type=int, default=16, help="intervals to forecast")
    fc.add_argument("--plot", type=Path, metavar="FILE", help="write a fan chart PNG")
    _add_model(fc)
    fc.set_defaults(func=_forecast)

    gen = subparsers.add_parser("generate", help="synthesise a trace that continues a given one")
    gen.add_argument(
        "--like", type=Path, required=True, metavar="TRACE", help="long CSV trace to continue"
    )
    gen.add_argument("--days", type=float, default=1.0)
    gen.add_argument(
        "-o", "--output", type=Path, required=True, metavar="FILE", help="long CSV to write"
    )
    gen.add_argument("--seed", type=int, default=0)
    _add_model(gen)
    gen.set_defaults(func=_generate)

    ev = subparsers.add_parser(
        "evaluate", help="score the model against seasonal naive, EWMA and rolling quantile"
    )
    _add_sources(ev)
    ev.add_argument("--horizon", type=int, default=16)
    ev.add_argument("--stride", type=int, default=16, help="intervals between forecast origins")
    ev.add_argument("--samples", type=int, default=100)
    ev.add_argument("--json", type=Path, metavar="FILE", help="also write the report as JSON")
    _add_model(ev)
    ev.set_defaults(func=_evaluate)


def _add_sources(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--traces", type=Path, nargs="*", default=[], metavar="FILE", help="long CSV traces"
    )
    p.add_argument(
        "--scenario", nargs="*", default=[], metavar="NAME:SEED[:DAYS]", help=SCENARIO_HELP
    )


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", type=Path, metavar="DIR", help="checkpoint directory (default: bundled)"
    )
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument(
        "--quantize", choices=["int8", "none"], default="none", help="dynamic int8 on the CPU"
    )


def _usage(message: str) -> Exception:
    from sliceai.cli import UsageError

    return UsageError(message)


def _pipeline(args: argparse.Namespace) -> Any:
    from sliceai.forecast import ForecastError, ForecastPipeline

    try:
        return ForecastPipeline.load(
            args.model, device=args.device, quantize=None if args.quantize == "none" else "int8"
        )
    except ForecastError as exc:
        raise _usage(str(exc)) from None


def read_trace(path: Path) -> Any:
    """A whole long-CSV trace in memory; unreadable files become usage errors."""
    from sliceai.traffic import Trace, TraceError
    from sliceai.traffic.longcsv import read_long_csv

    try:
        return Trace.concat(read_long_csv(path))
    except (OSError, TraceError) as exc:
        raise _usage(f"{path}: {exc}") from None


def scenario_trace(spec: str) -> Any:
    """Generate ``NAME:SEED[:DAYS]`` with the traffic generators (1-minute intervals)."""
    from sliceai.forecast.scenarios import generate_scenario

    parts = spec.split(":")
    try:
        name, seed = parts[0], int(parts[1])
        days = float(parts[2]) if len(parts) > 2 else 7.0
    except (IndexError, ValueError):
        raise _usage(f"bad scenario {spec!r}; expected NAME:SEED[:DAYS]") from None
    try:
        return generate_scenario(name, seed, days)
    except ValueError as exc:
        raise _usage(f"scenario {spec!r}: {exc}") from None


def _sources(args: argparse.Namespace) -> list[Any]:
    traces = [read_trace(p) for p in args.traces] + [scenario_trace(s) for s in args.scenario]
    if not traces:
        raise _usage("give traces with --traces FILE... or --scenario NAME:SEED...")
    return traces


def _train(args: argparse.Namespace) -> int:
    from sliceai.forecast import ForecastError
    from sliceai.forecast.config import ForecastConfig
    from sliceai.forecast.training.data import series_from_traces
    from sliceai.forecast.training.train import TrainOptions, train

    traces = _sources(args)
    history = ForecastConfig().history_length
    pairs = [s.split(0.85, history=history(s.interval_s)) for s in series_from_traces(traces)]
    opts = TrainOptions(
        epochs=args.epochs, steps_per_epoch=args.steps, seed=args.seed, device=args.device
    )
    meta = {"trained_on": [str(p) for p in args.traces] + list(args.scenario)}
    try:
        result = train(
            [a for a, _ in pairs],
            [b for _, b in pairs],
            args.out,
            options=opts,
            resume=args.resume,
            metadata=meta,
        )
    except ForecastError as exc:
        print(f"sliceai train: {exc}", file=sys.stderr)
        return 1
    print(
        f"best validation CRPS {result.best_val_crps:.4f} (epoch {result.best_epoch}); "
        f"{result.epochs_run} epochs{' (stopped early)' if result.stopped_early else ''}; "
        f"checkpoint in {args.out}"
    )
    return 0


def _forecast(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from sliceai.forecast import ForecastError
    from sliceai.traffic import DIRECTION_NAMES

    trace = read_trace(args.trace)
    pipe = _pipeline(args)
    n_slices = len(trace.slices)
    ctx_len = min(trace.n_intervals, pipe.history_length(trace.interval_s))
    first = trace.n_intervals - ctx_len
    contexts = np.moveaxis(trace.load_bps[first:], 0, -1).reshape(n_slices * 2, ctx_len)
    start = trace.start + first * trace.interval_s
    levels = (0.05, 0.5, 0.95, 0.999)
    try:
        q = pipe.quantiles(
            contexts, args.horizon, levels, start_time=start, interval_s=trace.interval_s
        )
    except ForecastError as exc:
        raise _usage(str(exc)) from None
    names = [f"{s}/{d}" for s in trace.slices for d in DIRECTION_NAMES]
    rows = []
    for k, name in enumerate(names):
        rows.append(
            [name, _mbps(contexts[k, -1])]
            + [_mbps(v) for v in q[k, -1]]
            + [_mbps(q[k, :, 3].max())]
        )
    headers = (
        ["series", "last Mbit/s"]
        + [f"step {args.horizon} p{100 * lv:g}" for lv in levels]
        + ["max p99.9"]
    )
    print(tabulate(rows, headers=headers, disable_numparse=True))
    if args.plot is not None:
        from sliceai.forecast.plot import fan_chart

        bands = (0.005, 0.025, 0.1, 0.5, 0.9, 0.975, 0.995)
        qp = pipe.quantiles(
            contexts, args.horizon, bands, start_time=start, interval_s=trace.interval_s
        )
        shown = contexts[:, -pipe.config.context_length :]
        fan_chart(args.plot, names, shown, qp, bands, trace.interval_s)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _mbps(v: float) -> str:
    return "-" if not np.isfinite(v) else f"{v / 1e6:.3f}"


def _generate(args: argparse.Namespace) -> int:
    from sliceai.forecast.generate import continue_trace
    from sliceai.traffic.longcsv import write_long_csv

    trace = read_trace(args.like)
    n = round(args.days * 86400.0 / trace.interval_s)
    if n < 1:
        raise _usage("--days gives less than one interval")
    synthetic = continue_trace(_pipeline(args), trace, n, seed=args.seed)
    write_long_csv(synthetic, args.output)
    print(f"wrote {args.output}: {n} intervals x {len(trace.slices)} slices", file=sys.stderr)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from sliceai.forecast.evaluate import EvaluationOptions, evaluate, render

    pipe = _pipeline(args)
    traces = _sources(args)
    report = evaluate(
        pipe,
        traces,
        EvaluationOptions(horizon=args.horizon, stride=args.stride, n_samples=args.samples),
    )
    report["traces"] = [str(p) for p in args.traces] + list(args.scenario)
    report["model"] = str(args.model or "bundled")
    print(render(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0
