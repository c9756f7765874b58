"""A sweep's table (``results.parquet`` and ``results.csv``) and its summary (``summary.md``,
``sweep_cost.png``, ``sweep_violations.png``).

The table has one row per cell and slice (``slice`` = ``*`` is the cell's total; a failed
cell has only that row, with its ``status`` and ``error``); the columns are the replay's
metrics (:mod:`sliceai.replay.metrics`). The summary, per policy and allocator: cells run,
the mean of each cell's cost over the cheapest allocator's in the same (trace, policy),
the mean violation rate, the slices over their risk and allocated / used; then the failed
cells with their errors. Colours follow the replay's plots (:func:`sliceai.replay.plots.style_of`).
"""

from __future__ import annotations

import csv
import os
import secrets
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tabulate import tabulate

from sliceai.plugins import load
from sliceai.replay.plots import style_of
from sliceai.sweep.cells import METRICS, rows

COLUMNS = (
    "trace",
    "policy",
    "allocator",
    "slice",
    "status",
    "error",
    "seconds",
    *METRICS,
    "risk",
    "over_risk",
)
TYPES: dict[str, pa.DataType] = {
    "unservable_intervals": pa.int64(),
    "reconfigurations": pa.int64(),
    "over_risk": pa.int64(),
}


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def table_rows(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row for record in records for row in rows(record)]


def write_table(records: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    """``results.parquet`` and ``results.csv`` under ``out`` (each atomically)."""
    table_data = table_rows(records)
    schema = pa.schema(
        [
            pa.field(
                c,
                TYPES.get(
                    c,
                    pa.string()
                    if c in ("trace", "policy", "allocator", "slice", "status", "error")
                    else pa.float64(),
                ),
            )
            for c in COLUMNS
        ]
    )
    table = pa.Table.from_pylist(table_data, schema=schema)
    written = []
    for name in ("results.parquet", "results.csv"):
        path = out / name
        tmp = _tmp(path)
        try:
            if name.endswith(".parquet"):
                pq.write_table(table, tmp, compression="zstd")
            else:
                with tmp.open("x", encoding="utf-8", newline="") as f:
                    writer = csv.DictWriter(f, COLUMNS)
                    writer.writeheader()
                    writer.writerows(table_data)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        written.append(path)
    return written


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def relative_costs(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str, str], float]:
    """(trace, policy, allocator) -> its cost over the cheapest allocator's on that pair."""
    totals: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for row in table_rows(records):
        if row["slice"] == "*" and row["status"] == "ok" and row["cost"] is not None:
            totals[row["trace"], row["policy"]][row["allocator"]] = row["cost"]
    out = {}
    for (trace, policy), costs in totals.items():
        best = min(costs.values())
        for allocator, cost in costs.items():
            out[trace, policy, allocator] = cost / best if best > 0 else 1.0
    return out


def summary_table(records: Sequence[dict[str, Any]]) -> str:
    """The per policy and allocator table (Markdown) and the failed cells."""
    relative = relative_costs(records)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    failed = []
    for row in table_rows(records):
        if row["slice"] != "*":
            continue
        if row["status"] != "ok":
            failed.append(row)
        groups[row["policy"], row["allocator"]].append(row)
    lines = []
    for (policy, allocator), group in sorted(groups.items()):
        ok = [r for r in group if r["status"] == "ok"]
        cost = _mean([relative.get((r["trace"], policy, allocator)) for r in ok])
        lines.append(
            [
                policy,
                allocator,
                f"{len(ok)}/{len(group)}",
                None if cost is None else f"{cost:.2f}",
                _pct(_mean([r["violation_rate"] for r in ok])),
                sum(r["over_risk"] or 0 for r in ok),
                _fmt(_mean([r["overprovisioning"] for r in ok])),
            ]
        )
    text = tabulate(
        lines,
        headers=[
            "policy",
            "allocator",
            "cells ok",
            "cost / cheapest",
            "violations",
            "slices over risk",
            "allocated / used",
        ],
        tablefmt="github",
    )
    if failed:
        text += f"\n\n{len(failed)} failed cell(s):\n\n" + "\n".join(
            f"- {r['trace']} x {r['policy']} x {r['allocator']}: {r['error']}" for r in failed
        )
    return text


def _pct(x: float | None) -> str | None:
    return None if x is None else f"{100 * x:.2f}%"


def _fmt(x: float | None) -> str | None:
    return None if x is None else f"{x:.2f}"


def write_summary(
    records: Sequence[dict[str, Any]], out: Path, *, plots: bool = True
) -> list[Path]:
    """``summary.md`` and, with ``plots``, the two figures; their paths."""
    path = out / "summary.md"
    n_ok = sum(r["status"] == "ok" for r in records)
    head = (
        f"# Sweep: {n_ok} of {len(records)} cells replayed\n\n"
        "cost / cheapest: each cell's DeepCog cost over the cheapest allocator's on the same "
        "trace and policy, averaged over traces; violations: mean over slices of the share "
        "of intervals violated; slices over risk: summed over traces.\n\n"
    )
    tmp = _tmp(path)
    tmp.write_text(head + summary_table(records) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    written = [path]
    if plots and n_ok:
        written += _plots(records, out)
    return written


def _plots(records: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    load("matplotlib").use("Agg")
    plt = load("matplotlib.pyplot")
    relative = relative_costs(records)
    totals = [r for r in table_rows(records) if r["slice"] == "*" and r["status"] == "ok"]
    policies = sorted({r["policy"] for r in totals})
    allocators = list(dict.fromkeys(r["allocator"] for r in totals))
    written = []

    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(policies) * len(allocators) / 3), 4))
    width = 0.8 / max(len(allocators), 1)
    for k, allocator in enumerate(allocators):
        colour, _, _ = style_of(allocator, k)
        means, lows, highs = [], [], []
        for policy in policies:
            values = [v for (_, p, a), v in relative.items() if p == policy and a == allocator]
            mean = sum(values) / len(values) if values else 0.0
            means.append(mean)
            lows.append(mean - min(values, default=mean))
            highs.append(max(values, default=mean) - mean)
        xs = [i + (k - (len(allocators) - 1) / 2) * width for i in range(len(policies))]
        ax.bar(xs, means, width, color=colour, label=allocator, yerr=[lows, highs], capsize=2)
    ax.set_xticks(range(len(policies)), policies)
    ax.set_yscale("log")
    ax.set_ylabel("cost / cheapest allocator (mean, min-max over traces)")
    ax.legend(fontsize="small", ncol=3)
    ax.set_title("Cost by policy and allocator")
    fig.tight_layout()
    written.append(_save(plt, fig, out / "sweep_cost.png"))

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for k, allocator in enumerate(allocators):
        colour, _, marker = style_of(allocator, k)
        points = [
            (r["overprovisioning"], r["violation_rate"])
            for r in totals
            if r["allocator"] == allocator and r["overprovisioning"] is not None
        ]
        if points:
            over, violated = zip(*points, strict=True)
            ax.scatter(over, violated, color=colour, marker=marker, label=allocator, alpha=0.8)
    ax.set_xlabel("allocated / used")
    ax.set_ylabel("violation rate (mean over slices)")
    ax.set_title("Every cell: violations against idle reservation")
    ax.legend(fontsize="small")
    fig.tight_layout()
    written.append(_save(plt, fig, out / "sweep_violations.png"))
    return written


def _save(plt: Any, fig: Any, path: Path) -> Path:
    tmp = _tmp(path).with_suffix(".png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path
