"""Fan charts of forecasts (matplotlib, Agg backend: no display needed; loaded when a
chart is drawn, see :mod:`sliceai.plugins`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sliceai.plugins import load

#: History intervals shown before the forecast.
HISTORY = 96


def fan_chart(
    path: Path,
    names: Sequence[str],
    history: npt.NDArray[np.float64],
    quantiles: npt.NDArray[np.float32],
    levels: Sequence[float],
    interval_s: float,
) -> None:
    """One panel per series: ``history`` ``(n, length)`` bit/s and nested bands between
    symmetric ``quantiles`` ``(n, horizon, Q)`` at ``levels`` (sorted), in Mbit/s."""
    load("matplotlib").use("Agg")
    plt = load("matplotlib.pyplot")
    n = len(names)
    cols = min(2, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 2.2 * rows), squeeze=False)
    lv = list(levels)
    horizon = quantiles.shape[1]
    minutes = interval_s / 60.0
    t_hist = (np.arange(-min(HISTORY, history.shape[1]), 0) + 1) * minutes
    t_fc = np.arange(1, horizon + 1) * minutes
    pairs = [(i, len(lv) - 1 - i) for i in range(len(lv) // 2) if lv[i] < 0.5 < lv[len(lv) - 1 - i]]
    median = int(np.argmin(np.abs(np.array(lv) - 0.5)))
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.axis("off")
            continue
        ax.plot(t_hist, history[k, -len(t_hist) :] / 1e6, color="black", lw=0.8)
        for depth, (lo, hi) in enumerate(pairs):
            ax.fill_between(
                t_fc,
                quantiles[k, :, lo] / 1e6,
                quantiles[k, :, hi] / 1e6,
                color="tab:blue",
                alpha=0.2 + 0.15 * depth,
            )
        ax.plot(t_fc, quantiles[k, :, median] / 1e6, color="tab:blue", lw=1.0)
        ax.set_title(names[k], fontsize=8)
        ax.set_ylabel("Mbit/s", fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("minutes from now", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
