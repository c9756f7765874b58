"""``sliceai assess``: replay every allocator and score the forecast on each trace, and
judge the ``sliceai`` allocator against the baselines in one table.

For each trace (long CSV, in a policy's slices):

- every allocator is replayed (:func:`sliceai.replay.replay`); a slice keeps its
  promise when its violation rate over the intervals the policy could serve
  (``violation_rate_servable``) is at most its risk x :data:`RISK_SLACK`;
- the forecaster the service plans with (``--model``, pooled by default) is scored
  against seasonal naive, EWMA and the rolling quantile
  (:func:`sliceai.forecast.evaluate.evaluate`: CRPS, 95 % interval coverage, pinball
  loss at 0.999);
- the verdicts: ``sliceai``'s cost against the cheapest baseline and against the
  cheapest baseline that keeps every slice's promise, its slices over their risk, the
  forecast's CRPS against the best baseline, its coverage and its 0.999 pinball loss
  against the rolling quantile's.

``--markdown FILE`` puts the tables in FILE's ``assessment`` section (the section
markers of ``make bench``); ``--json FILE`` writes everything.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tabulate import tabulate

from sliceai.bench.report import machine_description, replace_sections
from sliceai.forecast.evaluate import EvaluationError, EvaluationOptions, evaluate
from sliceai.policy import Policy
from sliceai.replay import Allocator, ReplayError, replay
from sliceai.replay.planned import sliceai_allocator
from sliceai.replay.replay_command import load_policy_for_cli, resolve_allocators
from sliceai.traffic import Trace, TraceError
from sliceai.traffic.longcsv import read_long_csv
from sliceai.usage import UsageError

#: A slice keeps its promise while its servable violation rate is within risk x this.
RISK_SLACK = 1.5
#: Allocators the ``sliceai`` one is judged against.
BASELINES = ("static", "proportional", "ewma", "rolling-quantile")
SCORED = "sliceai"
SECTION = "assessment"


@dataclass(frozen=True)
class TraceAssessment:
    """One trace: the replay report (``sliceai replay --json``'s shape), the forecast
    scores (``sliceai evaluate --json``'s, or None with ``forecast_error``) and the policy."""

    name: str
    policy: Policy
    replay: dict[str, Any]
    forecast: dict[str, Any] | None
    forecast_error: str = ""

    def over_risk(self, allocator: str) -> list[str]:
        """``slice:rate%/risk%`` for each slice whose servable violation rate is above its
        risk x :data:`RISK_SLACK`."""
        out = []
        for name, m in self.replay["allocators"][allocator]["slices"].items():
            rate = m.get("violation_rate_servable")
            risk = self.policy.slice(name).risk
            if rate is not None and rate > RISK_SLACK * risk:
                out.append(f"{name} {100 * rate:.2f}%/{100 * risk:g}%")
        return out

    def cost(self, allocator: str) -> float:
        return float(self.replay["allocators"][allocator]["total"]["cost"])

    def verdict(self) -> dict[str, Any]:
        """How ``sliceai`` did on this trace (the assessment's summary row)."""
        names = [b for b in BASELINES if b in self.replay["allocators"]]
        cheapest = min((self.cost(b) for b in names), default=float("nan"))
        keeping = [self.cost(b) for b in names if not self.over_risk(b)]
        out: dict[str, Any] = {
            "trace": self.name,
            "cost_vs_cheapest": self.cost(SCORED) / cheapest,
            "cost_vs_cheapest_keeping_risk": self.cost(SCORED) / min(keeping) if keeping else None,
            "over_risk": self.over_risk(SCORED),
        }
        if self.forecast is not None:
            methods = self.forecast["methods"]
            pin = methods["sliceai"]["pinball"]["0.999"]
            rolling = methods["rolling-quantile"]["pinball"]["0.999"]
            out |= {
                "crps_vs_best_baseline": 1.0 - self.forecast["crps_improvement"],
                "coverage_95": methods["sliceai"]["coverage"]["0.95"],
                "pinball_999_vs_rolling": pin / rolling if rolling > 0 else None,
            }
        return out


def assess_trace(
    name: str,
    trace: Trace,
    policy: Policy,
    allocators: Sequence[str],
    model: str | None,
    device: str,
    progress: bool = False,
) -> TraceAssessment:
    """Replay ``allocators`` (which must include ``sliceai``: the ``model`` checkpoint on
    ``device``, pooled) and score the same forecaster on ``trace``."""
    scored = sliceai_allocator(model, device)
    chosen: list[str | Allocator] = [scored if a == SCORED else a for a in allocators]
    result = replay(trace, policy, chosen, trace_name=name, progress=progress)
    forecaster = scored.planner.forecaster
    try:
        scores: dict[str, Any] | None = evaluate(
            forecaster, [trace], EvaluationOptions(progress=progress), labels=[name]
        )
        why = ""
    except EvaluationError as exc:
        scores, why = None, str(exc)
    return TraceAssessment(name, policy, result.to_json(), scores, why)


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def summary_table(items: Sequence[TraceAssessment], tablefmt: str = "github") -> str:
    """One row per trace: ``sliceai``'s verdict."""
    rows = []
    for item in items:
        v = item.verdict()
        rows.append(
            [
                v["trace"],
                _ratio(v["cost_vs_cheapest"]),
                _ratio(v["cost_vs_cheapest_keeping_risk"]),
                ", ".join(v["over_risk"]) or "none",
                _ratio(v.get("crps_vs_best_baseline")),
                "-" if "coverage_95" not in v else f"{100 * v['coverage_95']:.1f}%",
                _ratio(v.get("pinball_999_vs_rolling")),
            ]
        )
    headers = [
        "trace",
        "cost / cheapest baseline",
        "cost / cheapest keeping risk",
        "slices over risk x 1.5",
        "CRPS / best baseline",
        "95% coverage",
        "pinball 0.999 / rolling",
    ]
    return tabulate(rows, headers=headers, tablefmt=tablefmt)


def trace_table(item: TraceAssessment, tablefmt: str = "github") -> str:
    """Every allocator on one trace: cost, waste, the slices over their risk."""
    allocs = item.replay["allocators"]
    names = [b for b in BASELINES if b in allocs]
    cheapest = min((item.cost(b) for b in names), default=float("nan"))
    rows = []
    for name, m in allocs.items():
        total = m["total"]
        used = total.get("overprovisioning")
        rows.append(
            [
                name,
                f"{item.cost(name):.4g}",
                f"{item.cost(name) / cheapest:.3f}",
                "-" if used is None else f"{used:.2f}",
                ", ".join(item.over_risk(name)) or "none",
            ]
        )
    unservable = {
        s: m.get("unservable_intervals", 0)
        for s, m in allocs[SCORED]["slices"].items()
        if m.get("unservable_intervals", 0)
    }
    n = item.replay["intervals"]
    note = ", ".join(f"{s} {100 * k / n:.2f}%" for s, k in unservable.items()) or "none"
    headers = ["allocator", "cost (bits)", "/ cheapest baseline", "alloc / used", "over risk x 1.5"]
    table = tabulate(rows, headers=headers, tablefmt=tablefmt)
    head = (
        f"**{item.name}**: {n} intervals of {item.replay['interval_s']:g} s, policy "
        f"{item.policy.name}; intervals no allocation within the policy could serve: {note}"
    )
    if item.forecast is not None:
        f = item.forecast
        head += (
            f"; forecast `{f['forecaster']}` CRPS {1 - f['crps_improvement']:.3f} x the best "
            f"baseline's ({f['horizon']} steps every {f['stride']} intervals)"
        )
    elif item.forecast_error:
        head += f"; forecast not scored: {item.forecast_error}"
    return f"{head}\n\n{table}"


def markdown_section(items: Sequence[TraceAssessment], command: str) -> str:
    today = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = "\n\n".join(trace_table(i) for i in items)
    return (
        f"<!-- bench:{SECTION}:start -->\n## {SECTION}\n\n"
        f"- command: `{command}`\n- machine: {machine_description()}\n- date: {today}\n"
        f"- a slice keeps its promise when its violation rate over the intervals the policy "
        f"could serve is at most its risk x {RISK_SLACK:g}; cost is DeepCog's "
        f"(128 / priority x unserved bits + idle reserved bits)\n\n"
        f"{summary_table(items)}\n\n{body}\n<!-- bench:{SECTION}:end -->\n"
    )


def _read(path: Path, policy: Policy) -> Trace:
    try:
        return Trace.concat(read_long_csv(path, slices=policy.slice_names))
    except TraceError as exc:
        raise UsageError(f"{path}: {exc}") from None


def work_list(args: argparse.Namespace) -> list[tuple[Path, Path]]:
    """(trace, policy) pairs from ``TRACE... --policy P`` or ``--manifest FILE`` (lines
    ``TRACE POLICY``, relative paths from the manifest's folder, ``#`` comments)."""
    if args.manifest is not None:
        if args.traces or args.policy is not None:
            raise UsageError("give either --manifest or TRACE... --policy P, not both")
        try:
            lines = args.manifest.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise UsageError(f"{args.manifest}: {exc.strerror or exc}") from None
        pairs = []
        for k, line in enumerate(lines, start=1):
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            if len(words) != 2:
                raise UsageError(f"{args.manifest}:{k}: expected 'TRACE POLICY', got {line!r}")
            here = args.manifest.parent
            pairs.append((here / words[0], here / words[1]))
        return pairs
    if not args.traces or args.policy is None:
        raise UsageError("give TRACE... and --policy P, or --manifest FILE")
    return [(path, args.policy) for path in args.traces]


def run(args: argparse.Namespace) -> int:
    """``sliceai assess TRACE... --policy P`` or ``--manifest FILE``; the exit code."""
    pairs = work_list(args)
    names = resolve_allocators(args.allocator)
    if SCORED not in names:
        raise UsageError(f"--allocator must include {SCORED!r}: it is what is assessed")
    for path, _ in pairs:
        if not path.is_file():
            raise UsageError(f"{path}: cannot read trace: no such file")
    items = []
    for path, policy_path in pairs:
        policy = load_policy_for_cli(policy_path)
        if isinstance(policy, int):
            return policy
        trace = _read(path, policy)
        try:
            item = assess_trace(
                path.stem, trace, policy, names, args.model, args.device, not args.no_progress
            )
        except ReplayError as exc:
            print(f"sliceai assess: {path}: {exc}", file=sys.stderr)
            return 1
        items.append(item)
        print(trace_table(item, "simple"), end="\n\n", flush=True)
    print(summary_table(items, "simple"))
    if args.json:
        payload = [
            {"trace": i.name, "verdict": i.verdict(), "replay": i.replay, "forecast": i.forecast}
            for i in items
        ]
        args.json.write_text(json.dumps(payload, indent=1, default=float), encoding="utf-8")
    if args.markdown:
        command = "sliceai assess " + " ".join(sys.argv[2:])
        replace_sections(args.markdown, {SECTION: markdown_section(items, command)})
        print(f"wrote the {SECTION} section of {args.markdown}", file=sys.stderr)
    return 0
