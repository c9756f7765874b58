"""Replay reports: the terminal comparison table, the JSON file and the PNG plots.

JSON shape (``ReplayResult.to_json``)::

    {"trace": NAME, "policy": NAME, "intervals": N, "interval_s": S, "start": EPOCH_S,
     "missing_slices": [...],
     "allocators": {ALLOCATOR: {"total": {...}, "slices": {SLICE: {
         "violation_rate", "unservable_intervals", "violation_rate_servable",
         "unserved_bits", "p50_delay_ms", "p99_delay_ms", "overprovisioning",
         "reconfigurations", "cost", ...}}}}}

Non-finite numbers are written as ``null``; ``absent_directions`` lists the directions
without demand in the trace (nothing reserved or charged there). The plots are
:mod:`sliceai.replay.plots`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tabulate import tabulate

from sliceai.policy import Policy
from sliceai.replay import plots
from sliceai.replay.engine import ReplayResult


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def report_json(result: ReplayResult) -> dict[str, Any]:
    """The JSON report as a dict (non-finite numbers replaced by ``None``)."""
    out: dict[str, Any] = _finite(result.to_json())
    return out


def write_json(result: ReplayResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report_json(result), indent=2, allow_nan=False) + "\n")


def _bits(x: float) -> str:
    for unit, scale in (("Tbit", 1e12), ("Gbit", 1e9), ("Mbit", 1e6), ("kbit", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.3g} bit"


def _opt(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def comparison_table(result: ReplayResult, per_slice: bool = False) -> str:
    """A text table: one row per allocator (totals), optionally one per allocator and slice.

    ``viol %``: mean over slices of the % of intervals violated; ``any viol %``: % of
    intervals in which some slice violated; ``cost/oracle``: cost over the oracle's.
    Per slice, ``servable viol %`` leaves out the intervals no allocation could serve,
    and a line after the table counts those per slice (when there are any).
    """
    head = (
        f"{result.trace}: {result.intervals} intervals of {result.interval_s:g} s "
        f"({result.intervals * result.interval_s / 3600:.1f} h), policy {result.policy}"
    )
    oracle = result.allocators.get("oracle")
    best = oracle.metrics["total"]["cost"] if oracle is not None else None
    rows = []
    for name, out in result.allocators.items():
        t = out.metrics["total"]
        rows.append(
            [
                name,
                f"{100 * t['violation_rate']:.2f}",
                f"{100 * t['any_violation_rate']:.2f}",
                _bits(t["unserved_bits"]),
                f"{t['p99_delay_ms']:.3g}",
                _opt(t["overprovisioning"], ".2f"),
                t["reconfigurations"],
                _bits(t["cost"]),
                "-" if not best else f"{t['cost'] / best:.2f}",
            ]
        )
    table = tabulate(
        rows,
        headers=[
            "allocator",
            "viol %",
            "any viol %",
            "unserved",
            "p99 delay ms",
            "alloc/used",
            "reconfig",
            "cost",
            "cost/oracle",
        ],
        disable_numparse=True,
    )
    text = f"{head}\n\n{table}"
    if per_slice:
        srows = []
        for name, out in result.allocators.items():
            for sname, m in out.metrics["slices"].items():
                srows.append(
                    [
                        name,
                        sname,
                        f"{100 * m['violation_rate']:.2f}",
                        _opt(_pct(m["violation_rate_servable"]), ".2f"),
                        _bits(m["unserved_bits"]),
                        f"{m['p50_delay_ms']:.3g}",
                        f"{m['p99_delay_ms']:.3g}",
                        _opt(m["overprovisioning"], ".2f"),
                        m["reconfigurations"],
                        _bits(m["cost"]),
                    ]
                )
        text += "\n\n" + tabulate(
            srows,
            headers=[
                "allocator",
                "slice",
                "viol %",
                "servable viol %",
                "unserved",
                "p50 ms",
                "p99 ms",
                "alloc/used",
                "reconfig",
                "cost",
            ],
            disable_numparse=True,
        )
        text += _unservable_line(result)
    return text


def _pct(x: float | None) -> float | None:
    return None if x is None else 100 * x


def _unservable_line(result: ReplayResult) -> str:
    """Intervals no allocation within the policy could serve, per slice ("" if none)."""
    first = next(iter(result.allocators.values()), None)
    if first is None:
        return ""
    counts = {s: m["unservable_intervals"] for s, m in first.metrics["slices"].items()}
    listed = ", ".join(f"{s} {c}" for s, c in counts.items() if c)
    if not listed:
        return ""
    return (
        "\n\nunservable intervals (demand above what the policy lets the slice have, "
        f"for every allocator): {listed}"
    )


def write_plots(result: ReplayResult, directory: Path, policy: Policy | None = None) -> list[Path]:
    """Write the PNG plots into ``directory`` (:mod:`sliceai.replay.plots`); their paths."""
    return plots.write_plots(result, directory, policy)
