"""Replay reports: the terminal comparison table, the JSON file and the PNG plots.

JSON shape (``ReplayResult.to_json``)::

    {"trace": NAME, "policy": NAME, "intervals": N, "interval_s": S, "start": EPOCH_S,
     "missing_slices": [...],
     "allocators": {ALLOCATOR: {"total": {...}, "slices": {SLICE: {
         "violation_rate", "unservable_intervals", "violation_rate_servable",
         "unserved_bits", "p50_delay_ms", "p99_delay_ms", "overprovisioning",
         "reconfigurations", "cost", ...}}}}}

Non-finite numbers are written as ``null``. Plots (matplotlib, Agg backend):
``allocation_dl.png`` / ``allocation_ul.png`` (allocation of every allocator vs
demand over time, one small panel per slice) and ``violation_vs_overprovisioning.png``
(one point per allocator).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tabulate import tabulate

from sliceai.plugins import load
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


def write_plots(result: ReplayResult, directory: Path) -> list[Path]:
    """Write the PNG plots into ``directory``; returns their paths.

    matplotlib is loaded here, not with the module (see :mod:`sliceai.plugins`).
    """
    load("matplotlib").use("Agg")
    plt = load("matplotlib.pyplot")
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    n_slices = len(result.slices)
    cols = 2 if n_slices > 1 else 1
    rows = math.ceil(n_slices / cols)
    hours_d = result.demand_first * result.interval_s / 3600.0
    for d, dname in enumerate(("dl", "ul")):
        fig, axes = plt.subplots(
            rows, cols, figsize=(6 * cols, 2.2 * rows), squeeze=False, sharex=True
        )
        for s, sname in enumerate(result.slices):
            ax = axes[s // cols][s % cols]
            ax.plot(
                hours_d, result.demand_bps[:, s, d] / 1e6, color="black", lw=1.2, label="demand"
            )
            for name, out in result.allocators.items():
                hours = out.series_first * result.interval_s / 3600.0
                ax.plot(hours, out.allocation_bps[:, s, d] / 1e6, lw=0.8, label=name)
            ax.set_title(sname, fontsize=9)
            ax.set_ylabel("Mbit/s", fontsize=8)
            ax.tick_params(labelsize=7)
        for s in range(n_slices, rows * cols):
            axes[s // cols][s % cols].set_visible(False)
        for ax in axes[-1]:
            ax.set_xlabel("hours since start", fontsize=8)
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 7), fontsize=8)
        fig.suptitle(
            f"{dname.upper()} allocation vs demand ({result.trace}, block means)", fontsize=10
        )
        fig.tight_layout(rect=(0, 0.04, 1, 0.98))
        path = directory / f"allocation_{dname}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, out in result.allocators.items():
        t = out.metrics["total"]
        if t["overprovisioning"] is None:
            continue
        ax.scatter(t["overprovisioning"], 100 * t["violation_rate"], s=40)
        ax.annotate(
            name,
            (t["overprovisioning"], 100 * t["violation_rate"]),
            fontsize=8,
            xytext=(4, 4),
            textcoords="offset points",
        )
    ax.set_xlabel("overprovisioning (allocated / used)")
    ax.set_ylabel("SLA violations (% of slice-intervals)")
    ax.set_title(f"violations vs overprovisioning ({result.trace})", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = directory / "violation_vs_overprovisioning.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    written.append(path)
    return written
