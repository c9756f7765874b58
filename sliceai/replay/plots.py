"""The replay's PNG plots (matplotlib, Agg backend, loaded when plotting).

- ``allocation_dl.png`` / ``allocation_ul.png``: one panel per slice, demand (grey
  area) and every allocator's allocation over time (block means). Each panel's y scale
  is set by its demand (up to 1.3 x its 99.5th percentile, and the slice's guaranteed
  rate): an allocator above it is listed in the panel's corner with its mean, not drawn
  over the rest. A direction without demand in the trace gets no figure.
- ``violation_vs_overprovisioning.png``: one panel per slice, each allocator a point
  (violation rate against allocated / used bits), the slice's risk a dashed line: the
  points below it keep the slice's promise, the ones to the left waste less.

Colours: the Okabe-Ito palette (distinguishable with colour-blindness), plus a marker or
line style per allocator; time in seconds, minutes, hours or days to fit the trace.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from sliceai.plugins import load
from sliceai.policy import Direction, Policy
from sliceai.replay.engine import ReplayResult

# Okabe & Ito (2008): orange, sky blue, bluish green, reddish purple, blue, vermillion, yellow
STYLE: dict[str, tuple[str, str, str]] = {  # colour, line style, marker
    "static": ("#E69F00", (0, (1, 1.5)), "s"),  # type: ignore[dict-item]
    "proportional": ("#56B4E9", "-.", "D"),
    "ewma": ("#009E73", "--", "^"),
    "rolling-quantile": ("#CC79A7", (0, (5, 1.5, 1, 1.5, 1, 1.5)), "v"),  # type: ignore[dict-item]
    "sliceai": ("#0072B2", "-", "o"),
    "oracle": ("#D55E00", (0, (2, 2)), "*"),  # type: ignore[dict-item]
}
OTHERS = ("#F0E442", "#000000", "#999999")
DEMAND = "#BBBBBB"
DPI = 100


def style_of(name: str, k: int) -> tuple[Any, Any, str]:
    """Colour, line style and marker of allocator ``name`` (the ``k``-th one drawn)."""
    if name in STYLE:
        return STYLE[name]
    return OTHERS[k % len(OTHERS)], "-", "P"


def time_axis(seconds: float) -> tuple[float, str]:
    """Divisor and unit for a time axis spanning ``seconds``: s, min, h or days."""
    if seconds <= 600:
        return 1.0, "s"
    if seconds <= 6 * 3600:
        return 60.0, "min"
    if seconds <= 4 * 86400:
        return 3600.0, "h"
    return 86400.0, "days"


def rate_unit(peak_bps: float) -> tuple[float, str]:
    """Divisor and unit for rates up to ``peak_bps``."""
    for scale, unit in ((1e9, "Gbit/s"), (1e6, "Mbit/s"), (1e3, "kbit/s")):
        if peak_bps >= scale:
            return scale, unit
    return 1.0, "bit/s"


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def write_plots(result: ReplayResult, directory: Path, policy: Policy | None = None) -> list[Path]:
    """Write the PNGs of the module doc into ``directory``; returns their paths.
    ``policy`` adds the guaranteed rates and the risks (the summary figure needs the risk)."""
    load("matplotlib").use("Agg")
    plt = load("matplotlib.pyplot")
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for d, dname in enumerate(("dl", "ul")):
        if dname in result.absent_directions:
            stale = directory / f"allocation_{dname}.png"
            stale.unlink(missing_ok=True)  # an earlier replay's plot would mislead
            continue
        written.append(_save(plt, _allocation_figure(plt, result, d, policy), directory, dname))
    written.append(_save(plt, _summary_figure(plt, result, policy), directory, None))
    return written


def _save(plt: Any, fig: Any, directory: Path, direction: str | None) -> Path:
    """Save ``fig`` as a PNG with a 256-colour palette (a third of the size, same look)."""
    name = "violation_vs_overprovisioning" if direction is None else f"allocation_{direction}"
    path = directory / f"{name}.png"
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    image = load("PIL.Image")
    with image.open(path) as png:
        small = png.convert("RGB").quantize(colors=256, method=image.Quantize.FASTOCTREE)
    small.save(path, optimize=True)
    return path


def _allocation_figure(plt: Any, result: ReplayResult, d: int, policy: Policy | None) -> Any:
    n = len(result.slices)
    height = 1.0 + 1.55 * n
    fig, axes = plt.subplots(n, 1, figsize=(10, height), squeeze=False, sharex=True)
    span = result.intervals * result.interval_s
    div, unit = time_axis(span)
    t_demand = result.demand_first * result.interval_s / div
    direction = (Direction.DL, Direction.UL)[d]
    for s, sname in enumerate(result.slices):
        ax = axes[s][0]
        demand = result.demand_bps[:, s, d]
        floor = policy.slice(sname).guaranteed_bps(direction) if policy is not None else 0.0
        top = max(1.3 * float(np.percentile(demand, 99.5)) if demand.size else 0.0, 1.3 * floor)
        if top <= 0:
            top = max(
                (float(out.allocation_bps[:, s, d].max()) for out in result.allocators.values()),
                default=1.0,
            )
            top = 1.15 * top if top > 0 else 1.0
        scale, runit = rate_unit(top)
        ax.fill_between(t_demand, demand / scale, color=DEMAND, lw=0, step="post")
        above = []
        for k, (name, out) in enumerate(result.allocators.items()):
            alloc = out.allocation_bps[:, s, d]
            colour, ls, _ = style_of(name, k)
            if alloc.size and float(np.median(alloc)) > top:
                above.append(f"{name} {_fmt(float(alloc.mean()) / scale)} (mean)")
                continue
            share = float((alloc > top).mean()) if alloc.size else 0.0
            if share >= 0.02:
                above.append(f"{name} {share:.0%} of the time")
            t = out.series_first * result.interval_s / div
            ax.plot(t, alloc / scale, color=colour, ls=ls, lw=1.3, drawstyle="steps-post")
        ax.set_ylim(0, top / scale)
        ax.set_xlim(0, span / div)
        ax.set_ylabel(runit, fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.25, lw=0.5)
        label = sname
        if policy is not None:
            sl = policy.slice(sname)
            label += f"   guaranteed {_fmt(floor / scale)} {runit}" if floor > 0 else ""
            label += f"   risk {sl.risk:.1%}".replace(".0%", "%")
        ax.set_title(label, fontsize=9, loc="left", pad=3)
        if above:
            ax.annotate(
                "above the scale: " + ", ".join(above),
                xy=(1, 1),
                xycoords="axes fraction",
                xytext=(-4, -4),
                textcoords="offset points",
                ha="right",
                va="top",
                fontsize=7.5,
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "#CCCCCC", "alpha": 0.9},
            )
    axes[-1][0].set_xlabel(f"time since start ({unit})", fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=DEMAND)]
    labels = ["demand"]
    for k, name in enumerate(result.allocators):
        colour, ls, _ = style_of(name, k)
        handles.append(plt.Line2D([], [], color=colour, ls=ls, lw=1.6))
        labels.append(name)
    dname = ("downlink", "uplink")[d]
    block = _block_note(result)
    fig.suptitle(
        f"{dname}: allocation and demand per slice ({result.trace}{block})",
        fontsize=10,
        y=1 - 0.12 / height,
    )
    fig.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, 1 - 0.32 / height),
        ncol=len(labels),
        fontsize=8.5,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / height))
    return fig


def _block_note(result: ReplayResult) -> str:
    first = result.demand_first
    if len(first) < 2:
        return ""
    block = float(first[1] - first[0]) * result.interval_s
    if block <= result.interval_s:
        return f", {_fmt(result.interval_s)} s intervals"
    return f", means over {_fmt(block)} s"


def _summary_figure(plt: Any, result: ReplayResult, policy: Policy | None) -> Any:
    n = len(result.slices)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(2.6 * cols + 0.6, 2.3 * rows + 0.9), squeeze=False
    )
    for s, sname in enumerate(result.slices):
        ax = axes[s // cols][s % cols]
        xs = []
        for k, (name, out) in enumerate(result.allocators.items()):
            m = out.metrics["slices"][sname]
            x = m["overprovisioning"]
            if x is None:
                continue
            colour, _, marker = style_of(name, k)
            ax.scatter(
                x,
                100 * m["violation_rate"],
                s=70 if marker == "*" else 42,
                color=colour,
                marker=marker,
                edgecolors="black",
                linewidths=0.4,
                zorder=3,
                alpha=0.9,
            )
            xs.append(x)
        if policy is not None:
            risk = 100 * policy.slice(sname).risk
            ax.axhline(risk, color="#333333", ls="--", lw=0.9, zorder=1)
            ax.annotate(
                f"risk {risk:g}%",
                xy=(1, risk),
                xycoords=("axes fraction", "data"),
                xytext=(-3, 2),
                textcoords="offset points",
                ha="right",
                fontsize=7,
                color="#333333",
            )
        ax.set_yscale("symlog", linthresh=0.1, linscale=0.5)
        ax.set_ylim(-0.03, 130)
        ax.set_yticks([0, 0.1, 1, 10, 100])
        ax.set_yticklabels(["0", "0.1", "1", "10", "100"])
        if xs and max(xs) / max(min(xs), 1e-9) > 8:
            ax.set_xscale("log")
        ax.set_title(sname, fontsize=9)
        ax.tick_params(labelsize=7.5)
        ax.grid(alpha=0.25, lw=0.5)
        if s % cols == 0:
            ax.set_ylabel("intervals violated (%)", fontsize=8)
        if s // cols == rows - 1 or s + cols >= n:
            ax.set_xlabel("allocated / used", fontsize=8)
    for s in range(n, rows * cols):
        axes[s // cols][s % cols].set_visible(False)
    handles, labels = [], []
    for k, name in enumerate(result.allocators):
        colour, _, marker = style_of(name, k)
        handles.append(
            plt.Line2D(
                [], [], ls="", marker=marker, color=colour, markeredgecolor="black", markersize=7
            )
        )
        labels.append(name)
    handles.append(plt.Line2D([], [], color="#333333", ls="--", lw=0.9))
    labels.append("slice's risk")
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.suptitle(
        f"violations against overprovisioning per slice ({result.trace}): "
        "below the dashed line keeps the promise, further left wastes less",
        fontsize=9.5,
    )
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    return fig
