"""Held-out forecast accuracy: ``python -m research.forecast.accuracy`` (``make evaluate``).

Scores a checkpoint (the bundled one by default) against the baselines with
:func:`sliceai.forecast.evaluate.evaluate` on the held-out traces of
:data:`research.forecast.traces.HELD_OUT` (training scenarios on unseen seeds and
the ``stadium`` mix), once on a 1-minute and once on a 10-second clock, and prints
the tables; ``--markdown`` also writes them into a section of BENCHMARKS.md that
``make bench`` leaves alone. The forecaster is scored as ``sliceai evaluate`` scores
it: built by :func:`sliceai.planning.load_forecaster`, the model pooled with EWMA
and the rolling quantile (``--no-pool``: the model alone).
Targets (issue #5): CRPS at least 15% below the best baseline's, 95% intervals
covering 93-97% of the points. ``--dev`` scores the dev traces
(:data:`research.forecast.traces.DEV`: other seeds) instead, to choose settings on
without looking at the held-out ones (it never writes BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sliceai.forecast.evaluate import (
    COVERAGES,
    MODEL,
    PINBALL_LEVELS,
    EvaluationOptions,
    evaluate,
    slice_table,
)
from sliceai.forecast.metrics import CRPS_LEVELS
from sliceai.forecast.scenarios import generate_scenario
from sliceai.planning.loading import load_forecaster

SECTION = "forecast-accuracy"
#: (interval_s, days) of the held-out traces.
CLOCKS = ((60.0, 7.0), (10.0, 7.0))
TARGET_IMPROVEMENT = 0.15
TARGET_COVERAGE_95 = (0.93, 0.97)
COMMAND = "make evaluate"


def trace_label(scenario: str, seed: int, days: float) -> str:
    return f"{Path(scenario).stem}:{seed}:{days:g}"


def run(
    model: str | None = None,
    clocks: Sequence[tuple[float, float]] = CLOCKS,
    threads: int = 2,
    progress: bool = True,
    dev: bool = False,
    pool: bool = True,
) -> list[dict[str, Any]]:
    """One :func:`evaluate` report per clock, with ``interval_s``, ``days`` and ``traces``
    (the held-out traces, or with ``dev`` the dev ones)."""
    from research.forecast.traces import DEV, HELD_OUT

    forecaster = load_forecaster(model, device="cpu", threads=threads, pool=pool)
    reports = []
    which = DEV if dev else HELD_OUT
    for interval_s, days in clocks:
        traces = [generate_scenario(name, seed, days, interval_s) for name, seed in which]
        labels = [trace_label(name, seed, days) for name, seed in which]
        report = evaluate(forecaster, traces, EvaluationOptions(progress=progress), labels=labels)
        report.update(
            interval_s=interval_s,
            days=days,
            traces=labels,
            model=model or "bundled",
        )
        reports.append(report)
    return reports


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def render_markdown(reports: Sequence[dict[str, Any]], command: str = COMMAND) -> str:
    """The BENCHMARKS.md section (with its markers) for :func:`run`'s reports."""
    from tabulate import tabulate

    from sliceai.bench.report import machine_description

    today = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"<!-- bench:{SECTION}:start -->",
        "## forecast accuracy (held-out)",
        "",
        f"- command: `{command}` (`python -m research.forecast.accuracy --markdown "
        "BENCHMARKS.md`; not rewritten by `make bench`)",
        f"- machine: {machine_description()}",
        f"- date: {today}",
        f"- model: {reports[0]['model'] if reports else '-'}; scored as `{MODEL}`: "
        f"{reports[0]['forecaster'] if reports else '-'}",
        f"- targets (issue #5): CRPS >= {TARGET_IMPROVEMENT:.0%} below the best baseline; "
        f"95% interval coverage {TARGET_COVERAGE_95[0]:.0%}..{TARGET_COVERAGE_95[1]:.0%}",
        "- scores: CRPS and pinball loss divided by each series' mean load, averaged over "
        "series; coverage over all forecast points; horizon 16, a forecast every 16 "
        f"intervals; CRPS from {len(CRPS_LEVELS)} quantiles ({CRPS_LEVELS[0]:g}, "
        f"{CRPS_LEVELS[1]:g} .. {CRPS_LEVELS[-1]:g}: twice their mean pinball loss)",
    ]
    for rep in reports:
        best = rep["best_baseline_crps"]
        rows = []
        for name, m in rep["methods"].items():
            ratio = m["crps"] / best if best > 0 else float("nan")
            rows.append(
                [name, f"{m['crps']:.4f}", f"{ratio:.3f}"]
                + [f"{v:.4f}" for v in m["pinball"].values()]
                + [_pct(v) for v in m["coverage"].values()]
            )
        headers = ["method", "CRPS/mean", "CRPS / best baseline"]
        headers += [f"pinball {p:g}" for p in PINBALL_LEVELS]
        headers += [f"cover {100 * c:g}%" for c in COVERAGES]
        per_trace = [
            [label, f"{t['crps'][MODEL]:.4f}"]
            + [f"{t['crps'][n]:.4f}" for n in t["crps"] if n != MODEL]
            + [f"{100 * t['crps_improvement']:+.1f}%"]
            for label, t in zip(rep["traces"], rep["per_trace"], strict=True)
        ]
        trace_headers = ["trace", MODEL] + [n for n in rep["methods"] if n != MODEL]
        trace_headers.append("vs best baseline")
        cover = rep["methods"][MODEL]["coverage"]["0.95"]
        met = (
            rep["crps_improvement"] >= TARGET_IMPROVEMENT
            and TARGET_COVERAGE_95[0] <= cover <= TARGET_COVERAGE_95[1]
        )
        lines += [
            "",
            f"### {rep['interval_s']:g} s intervals, {rep['days']:g} days per trace",
            "",
            f"{rep['n_series']} series, {rep['n_forecasts']} forecasts of {rep['horizon']} "
            f"steps. CRPS {100 * rep['crps_improvement']:+.1f}% vs the best baseline, "
            f"95% coverage {_pct(cover)}: target {'met' if met else 'not met'}.",
            "",
            tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True),
            "",
            "CRPS/mean per trace:",
            "",
            tabulate(per_trace, headers=trace_headers, tablefmt="github", disable_numparse=True),
        ]
        if rep.get("per_slice"):
            lines += [
                "",
                f"`{MODEL}` per slice (both directions, all traces; a calibrated forecast "
                "has about p of the points at or below its p quantile):",
                "",
                slice_table(rep["per_slice"], "github"),
            ]
    lines.append(f"<!-- bench:{SECTION}:end -->")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", default=None, help="checkpoint directory (default: bundled)")
    parser.add_argument("--markdown", type=Path, help="write the section into this file")
    parser.add_argument("--json", type=Path, help="also write the reports as JSON")
    parser.add_argument("--days", type=float, default=None, help="days per trace (default 7)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--no-pool", action="store_true", help="score the model alone, not the pooled forecaster"
    )
    parser.add_argument(
        "--dev", action="store_true", help="score the dev traces (never written to --markdown)"
    )
    args = parser.parse_args(argv)
    if args.dev and args.markdown is not None:
        parser.error("--dev reports are for choosing settings; they never go into --markdown")
    clocks = CLOCKS if args.days is None else tuple((i, args.days) for i, _ in CLOCKS)
    reports = run(args.model, clocks, args.threads, dev=args.dev, pool=not args.no_pool)
    text = render_markdown(reports)
    print(text)
    if args.json is not None:
        args.json.write_text(json.dumps(reports, indent=2) + "\n")
    if args.markdown is not None:
        from sliceai.bench.report import replace_sections

        replace_sections(args.markdown, {SECTION: text})
        print(f"wrote the {SECTION} section of {args.markdown}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
