"""Command line of the held-out generator.

::

    python -m sims.heldout --policy policies/hospital.yaml --seed 3 --days 2 \\
        --interval 10s --step 1.4@0.5 -o out.csv

writes a long CSV (``timestamp,slice,direction,bps``) and prints one line per
slice: its models, and per direction the mean, the 99th percentile and the
share of (measured) intervals above the policy maximum. Exit status 0 on
success, 2 for a bad argument or a policy that cannot be loaded.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
from collections.abc import Sequence

import numpy as np

from sims.heldout.family import (
    DEFAULT_START_EPOCH_S,
    HeldoutError,
    RegimeStep,
    generate_heldout_trace,
    heldout_recipes,
)
from sims.heldout.models import FAMILIES
from sims.heldout.recipes import SliceRecipe
from sims.heldout.timeline import SECONDS_PER_DAY, FloatArray
from sliceai.policy import PolicyError, load_policy
from sliceai.policy.units import UnitError, parse_duration_s
from sliceai.traffic.longcsv import write_long_csv
from sliceai.traffic.trace import TraceError


def parse_seconds(text: str) -> float:
    """``"10s"``, ``"1 s"``, ``"2h"``, ``"15min"`` or a bare number of seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_duration_s(text)
    except UnitError as exc:
        raise HeldoutError(str(exc)) from None


def parse_start(text: str) -> float:
    """Epoch seconds or an ISO 8601 time (UTC unless it gives an offset)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise HeldoutError(
            f"cannot read start {text!r}; give epoch seconds or e.g. 2025-01-06T00:00"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.timestamp()


def format_rate(bps: float) -> str:
    if not math.isfinite(bps):
        return "none" if math.isinf(bps) else "n/a"
    for unit, scale in (("Gbps", 1e9), ("Mbps", 1e6), ("kbps", 1e3)):
        if bps >= scale:
            return f"{bps / scale:.3g} {unit}"
    return f"{bps:.3g} bps"


def direction_summary(values: FloatArray, maximum_bps: float) -> str:
    measured = values[~np.isnan(values)]
    if measured.size == 0:
        return "no measured intervals"
    above = float(np.mean(measured > maximum_bps)) if math.isfinite(maximum_bps) else 0.0
    return (
        f"mean {format_rate(float(measured.mean()))}, "
        f"p99 {format_rate(float(np.quantile(measured, 0.99)))}, "
        f"above max {100 * above:.2f}%"
    )


def slice_summary(recipe: SliceRecipe, load: FloatArray) -> str:
    """One line: the slice, its models, DL and UL figures and its missing share."""
    parts = [
        f"{name.upper()} {direction_summary(load[:, k], recipe.maximum_bps[k])}"
        for k, name in enumerate(("dl", "ul"))
    ]
    missing = float(np.mean(np.isnan(load[:, 0])))
    return (
        f"{recipe.name}: {recipe.families} ({recipe.kind}); "
        + "; ".join(parts)
        + f"; missing {100 * missing:.2f}%"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sims.heldout",
        description="Held-out traffic for evaluation only (never train or tune on it).",
    )
    parser.add_argument("--policy", required=True, help="policy YAML, e.g. policies/hospital.yaml")
    parser.add_argument("--seed", type=int, default=0, help="non-negative integer (default 0)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--days", type=float, help="trace length in days (default 1)")
    length.add_argument("--intervals", type=int, help="trace length in intervals")
    parser.add_argument("--interval", default="10s", help="interval length, 1s .. 15min (10s)")
    parser.add_argument(
        "--start", default=str(DEFAULT_START_EPOCH_S), help="epoch s or ISO 8601 (2025-01-06)"
    )
    parser.add_argument(
        "--step", help="regime step FACTOR@FRACTION, e.g. 1.4@0.5 (FACTOR alone: at 0.5)"
    )
    parser.add_argument(
        "--missing-rate",
        type=float,
        help="share of missing intervals per slice (default: drawn per slice; 0: none)",
    )
    parser.add_argument("--no-weekly", action="store_true", help="no weekday/weekend difference")
    parser.add_argument("--family", choices=FAMILIES, help="force one model on every slice")
    parser.add_argument("-o", "--output", help="long CSV to write (left out: summary only)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        interval_s = parse_seconds(args.interval)
        if interval_s <= 0:
            raise HeldoutError(f"interval must be positive, got {args.interval!r}")
        if args.intervals is not None:
            n_intervals = args.intervals
        else:
            days = 1.0 if args.days is None else args.days
            if not days > 0:
                raise HeldoutError(f"--days must be positive, got {days!r}")
            n_intervals = max(1, round(days * SECONDS_PER_DAY / interval_s))
        policy = load_policy(args.policy)
        step = None if args.step in (None, "none") else RegimeStep.parse(args.step)
        weekly = not args.no_weekly
        trace = generate_heldout_trace(
            policy,
            seed=args.seed,
            n_intervals=n_intervals,
            interval_s=interval_s,
            start=parse_start(args.start),
            step=step,
            family=args.family,
            missing_rate=args.missing_rate,
            weekly=weekly,
        )
        recipes = heldout_recipes(
            policy, args.seed, family=args.family, missing_rate=args.missing_rate, weekly=weekly
        )
        if args.output:
            write_long_csv(trace, args.output)
    except (HeldoutError, PolicyError, TraceError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{trace.n_intervals} intervals of {trace.interval_s:g} s from {trace.start:.0f}"
        + (f", step x{step.factor:g} at {step.at_fraction:g}" if step else "")
        + (f" -> {args.output}" if args.output else "")
    )
    for i, recipe in enumerate(recipes):
        print(slice_summary(recipe, trace.load_bps[:, i, :]))
    return 0
