"""The terminal summary of ``sliceai replay`` and ``sliceai demo``: one short row per
allocator, then a sentence for every figure that needs one.

Columns: ``cost vs oracle`` (the DeepCog cost over the oracle's), ``slices over risk``
(slices that missed their SLA in a larger share of the intervals the policy could serve
than the risk they accept), ``allocated / used`` (bits reserved over bits carried:
1.00 is nothing idle) and ``violations`` (mean over slices of the share of intervals
violated). ``--verbose`` adds the full table with one row per allocator and slice
(:func:`sliceai.replay.report.comparison_table`).
"""

from __future__ import annotations

import textwrap
from typing import Any

from tabulate import tabulate

from sliceai.policy import Policy
from sliceai.replay.engine import ReplayResult

BEST_EFFORT_RISK = 0.05  # a slice accepting this risk or more misses often by design


def over_risk(slices: dict[str, dict[str, Any]], policy: Policy) -> list[str]:
    """Slices whose violation rate over the servable intervals is above their risk."""
    out = []
    for name, m in slices.items():
        rate = m["violation_rate_servable"]
        if rate is not None and rate > policy.slice(name).risk:
            out.append(name)
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%" if x >= 0.001 else f"{100 * x:.2f}%"


def summary_table(result: ReplayResult, policy: Policy) -> str:
    """The head line, the short table and its sentences."""
    hours = result.intervals * result.interval_s / 3600
    span = f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.1f} min"
    head = (
        f"{result.trace}: {result.intervals} intervals of {result.interval_s:g} s ({span}), "
        f"policy {result.policy}, {len(result.slices)} slices"
    )
    oracle = result.allocators.get("oracle")
    best = oracle.metrics["total"]["cost"] if oracle is not None else None
    rows = []
    for name, out in result.allocators.items():
        t = out.metrics["total"]
        over = over_risk(out.metrics["slices"], policy)
        listed = f" ({', '.join(over)})" if over and len(over) <= 3 else ""
        rows.append(
            [
                name,
                "-" if not best else f"x{t['cost'] / best:.2f}",
                f"{len(over)} of {len(result.slices)}{listed}",
                "-" if t["overprovisioning"] is None else f"{t['overprovisioning']:.2f}",
                _pct(t["violation_rate"]),
            ]
        )
    table = tabulate(
        rows,
        headers=["allocator", "cost vs oracle", "slices over risk", "allocated / used", "viol"],
        disable_numparse=True,
    )
    lines = [
        textwrap.fill(s, 90, initial_indent="- ", subsequent_indent="  ")
        for s in notes(result, policy)
    ]
    return f"{head}\n\n{table}\n\n" + "\n".join(lines)


def notes(result: ReplayResult, policy: Policy) -> list[str]:
    """The sentences under the table."""
    out = []
    if "oracle" in result.allocators:
        out.append(
            "oracle: allocates each interval knowing its demand, which no real allocator "
            "can; it is the reference for cost (x1.00 = as cheap as the oracle)."
        )
    out.append(
        "cost: 128 / priority x bits lost + bits reserved but idle (DeepCog), summed over "
        "slices; allocated / used: bits reserved over bits carried (1.00 = nothing idle)."
    )
    out.append(
        "slices over risk: slices that missed their SLA (shortfall over 1%, delay over "
        "budget or loss) in a larger share of the intervals the policy could serve than "
        "the risk they accept; viol: mean share of intervals violated over slices."
    )
    out += _risky_slices(result, policy)
    if result.absent_directions:
        dirs = " and ".join(d.upper() for d in result.absent_directions)
        out.append(
            f"{dirs}: no demand anywhere in the trace; no allocator reserves capacity there "
            "or is charged for it."
        )
    if result.missing_slices:
        out.append(
            f"not in the trace (replayed with no traffic): {', '.join(result.missing_slices)}."
        )
    first = next(iter(result.allocators.values()), None)
    if first is not None:
        unservable = {
            s: m["unservable_intervals"]
            for s, m in first.metrics["slices"].items()
            if m["unservable_intervals"]
        }
        if unservable:
            listed = ", ".join(f"{s} {n}" for s, n in unservable.items())
            out.append(
                f"intervals no allocation could serve (demand above what the policy lets the "
                f"slice have): {listed}; every allocator violates there, and they are left "
                "out of 'over risk'."
            )
    return out


def _risky_slices(result: ReplayResult, policy: Policy) -> list[str]:
    """A sentence for each slice that accepts a large risk and misses often."""
    out = []
    for name in result.slices:
        s = policy.slice(name)
        if s.risk < BEST_EFFORT_RISK:
            continue
        rates = {
            a: out_.metrics["slices"][name]["violation_rate"]
            for a, out_ in result.allocators.items()
        }
        forecasting = [r for a, r in rates.items() if a != "oracle"]
        if not forecasting or max(forecasting) < 0.01:
            continue
        kind = "has no guaranteed rate (best effort)" if not s.is_guaranteed else "is guaranteed"
        line = (
            f"{name} {kind} and accepts a {s.risk:.0%} risk: an allocator that forecasts "
            f"reserves about its {1 - s.risk:.0%} quantile of demand, so about 1 interval "
            f"in {round(1 / s.risk)} falls short by design"
        )
        if "sliceai" in rates:
            line += f" (sliceai {_pct(rates['sliceai'])}"
            line += f", oracle {_pct(rates['oracle'])})" if "oracle" in rates else ")"
        out.append(line + ".")
    return out
