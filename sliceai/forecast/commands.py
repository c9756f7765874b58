"""``sliceai train``, ``forecast``, ``generate`` and ``evaluate``: the handlers (their
options are in :mod:`sliceai.forecast_commands`; exit codes there)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from sliceai.forecast.config import ForecastConfig
from sliceai.forecast.errors import ForecastError
from sliceai.forecast.evaluate import EvaluationError, EvaluationOptions, evaluate, render
from sliceai.forecast.generate import continue_trace
from sliceai.forecast.pipeline import ForecastPipeline
from sliceai.forecast.plot import fan_chart
from sliceai.forecast.scenarios import generate_scenario
from sliceai.forecast.training.data import series_from_traces
from sliceai.forecast.training.distributed import from_environment, launch
from sliceai.forecast.training.train import (
    STATE_DIR,
    STATE_FILE,
    Counters,
    TrainOptions,
    train,
    train_shard,
)
from sliceai.planning.loading import load_forecaster
from sliceai.traffic import DIRECTION_NAMES, Trace, TraceError
from sliceai.traffic.longcsv import read_long_csv, write_long_csv
from sliceai.usage import UsageError


def _pipeline(args: argparse.Namespace) -> ForecastPipeline:
    try:
        return ForecastPipeline.load(
            args.model, device=args.device, quantize=None if args.quantize == "none" else "int8"
        )
    except ForecastError as exc:
        raise UsageError(str(exc)) from None


def read_trace(path: Path) -> Trace:
    """A whole long-CSV trace in memory; unreadable files become usage errors."""
    try:
        return Trace.concat(read_long_csv(path))
    except (OSError, TraceError) as exc:
        raise UsageError(f"{path}: {exc}") from None


def scenario_trace(spec: str) -> Trace:
    """Generate ``NAME:SEED[:DAYS]`` with the traffic generators (1-minute intervals)."""
    parts = spec.split(":")
    try:
        name, seed = parts[0], int(parts[1])
        days = float(parts[2]) if len(parts) > 2 else 7.0
    except (IndexError, ValueError):
        raise UsageError(f"bad scenario {spec!r}; expected NAME:SEED[:DAYS]") from None
    try:
        return generate_scenario(name, seed, days)
    except ValueError as exc:
        raise UsageError(f"scenario {spec!r}: {exc}") from None


def _sources(args: argparse.Namespace) -> list[Trace]:
    traces = [read_trace(p) for p in args.traces] + [scenario_trace(s) for s in args.scenario]
    if not traces:
        raise UsageError("give traces with --traces FILE... or --scenario NAME:SEED...")
    return traces


def train_command(args: argparse.Namespace) -> int:
    """``sliceai train``."""
    batch_size = TrainOptions().batch_size
    nproc = getattr(args, "nproc", 1)
    if nproc < 1:
        raise UsageError(f"--nproc must be at least 1, got {nproc}")
    if batch_size % nproc:
        raise UsageError(
            f"--nproc {nproc} must divide the batch size ({batch_size}): "
            "every process takes an equal block of each batch"
        )
    traces = _sources(args)
    history = ForecastConfig().history_length
    pairs = [s.split(0.85, history=history(s.interval_s)) for s in series_from_traces(traces)]
    opts = TrainOptions(
        epochs=args.epochs, steps_per_epoch=args.steps, seed=args.seed, device=args.device
    )
    meta = {"trained_on": [str(p) for p in args.traces] + list(args.scenario)}
    data = ([a for a, _ in pairs], [b for _, b in pairs], args.out)
    kwargs = {"options": opts, "resume": args.resume, "metadata": meta}
    try:
        if nproc > 1:
            launch(nproc, train_shard, *data, device=args.device, **kwargs)
            counters = Counters.read(args.out / STATE_DIR / STATE_FILE)
            best, best_epoch, run = counters.best_val, counters.best_epoch, counters.epoch
            early = run < opts.epochs
        else:
            result = train(*data, shard=from_environment(), **kwargs)
            best, best_epoch, run = result.best_val_crps, result.best_epoch, result.epochs_run
            early = result.stopped_early
    except ForecastError as exc:
        print(f"sliceai train: {exc}", file=sys.stderr)
        return 1
    print(
        f"best validation CRPS {best:.4f} (epoch {best_epoch}); "
        f"{run} epochs{' (stopped early)' if early else ''}"
        f"{f' on {nproc} processes' if nproc > 1 else ''}; checkpoint in {args.out}"
    )
    return 0


def forecast_command(args: argparse.Namespace) -> int:
    """``sliceai forecast``."""
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
        raise UsageError(str(exc)) from None
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


def generate_command(args: argparse.Namespace) -> int:
    """``sliceai generate``."""
    trace = read_trace(args.like)
    n = round(args.days * 86400.0 / trace.interval_s)
    if n < 1:
        raise UsageError("--days gives less than one interval")
    synthetic = continue_trace(_pipeline(args), trace, n, seed=args.seed)
    write_long_csv(synthetic, args.output)
    print(f"wrote {args.output}: {n} intervals x {len(trace.slices)} slices", file=sys.stderr)
    return 0


def evaluate_command(args: argparse.Namespace) -> int:
    """``sliceai evaluate``: the forecaster :func:`load_forecaster` builds from ``--model``
    (pooled unless ``--no-pool``) against the baselines."""
    if args.horizon < 1 or args.stride < 1:
        raise UsageError("--horizon and --stride must be at least 1")
    traces = _sources(args)
    try:
        forecaster = load_forecaster(args.model, args.device, pool=not args.no_pool)
    except ForecastError as exc:
        raise UsageError(str(exc)) from None
    labels = [str(p) for p in args.traces] + list(args.scenario)
    options = EvaluationOptions(horizon=args.horizon, stride=args.stride)
    try:
        report: dict[str, Any] = evaluate(forecaster, traces, options, labels=labels)
    except EvaluationError as exc:
        raise UsageError(str(exc)) from None
    report["traces"] = labels
    report["model"] = str(args.model or "bundled")
    print(render(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0
