"""Score the model against the baselines on traces: CRPS, pinball loss, coverage.

Every (slice, direction) column of every trace is forecast from origins spaced
``stride`` intervals apart (only origins whose whole target is observed).
Scores are made scale-free per series (divided by the series' mean load over
the scored targets) and then averaged over series, so a kbit/s alarm slice
counts as much as a Gbit/s eMBB slice; all-zero series are scored for coverage
but left out of the scale-free averages.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view
from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

from sliceai.forecast.baselines import (
    WINDOW,
    BaselineForecast,
    ewma_gaussian,
    rolling_quantile,
    seasonal_naive,
    seasonal_period,
)
from sliceai.forecast.features import origins_per_call
from sliceai.forecast.metrics import covered, crps_ensemble, interval_levels, pinball_loss
from sliceai.forecast.pipeline import ForecastPipeline
from sliceai.traffic import DIRECTION_NAMES, Trace

FloatArray = npt.NDArray[np.float64]
PINBALL_LEVELS = (0.5, 0.9, 0.99, 0.999)
COVERAGES = (0.8, 0.95, 0.99)
#: Quantile levels whose calibration :func:`slice_table` shows (among PINBALL_LEVELS).
CALIBRATION_LEVELS = (0.5, 0.9, 0.99)
MODEL = "sliceai"
#: Forecast origins per model call, at most (see ``origins_per_call``).
ORIGIN_CHUNK = 512


def _all_levels() -> FloatArray:
    lv = list(PINBALL_LEVELS)
    for c in COVERAGES:
        lv.extend(interval_levels(c))
    return np.array(sorted(set(lv)))


@dataclass
class _Scores:
    """Running sums for one method."""

    scaled_crps: list[float] = field(default_factory=list)
    scaled_pinball: list[FloatArray] = field(default_factory=list)
    hits: dict[float, int] = field(default_factory=lambda: dict.fromkeys(COVERAGES, 0))
    below: dict[float, int] = field(default_factory=lambda: dict.fromkeys(PINBALL_LEVELS, 0))
    points: int = 0

    def add(
        self, ens: FloatArray, quantiles: FloatArray, truth: FloatArray, levels: FloatArray
    ) -> None:
        """``ens`` ``(n, horizon, members)``, ``quantiles`` ``(n, horizon, Q)``,
        ``truth`` ``(n, horizon)``, all bit/s."""
        scale = float(np.mean(np.abs(truth)))
        pin_idx = [int(np.argmin(np.abs(levels - p))) for p in PINBALL_LEVELS]
        if scale > 0:
            self.scaled_crps.append(float(np.mean(crps_ensemble(ens, truth))) / scale)
            pin = pinball_loss(quantiles[..., pin_idx], truth, PINBALL_LEVELS)
            self.scaled_pinball.append(pin.reshape(-1, len(PINBALL_LEVELS)).mean(axis=0) / scale)
        for c in COVERAGES:
            lo, hi = interval_levels(c)
            i_lo, i_hi = int(np.argmin(np.abs(levels - lo))), int(np.argmin(np.abs(levels - hi)))
            self.hits[c] += int(covered(quantiles[..., i_lo], quantiles[..., i_hi], truth).sum())
        for p, i in zip(PINBALL_LEVELS, pin_idx, strict=True):
            self.below[p] += int(np.sum(truth <= quantiles[..., i]))
        self.points += truth.size

    def summary(self) -> dict[str, Any]:
        pin = (
            np.mean(self.scaled_pinball, axis=0)
            if self.scaled_pinball
            else np.full(len(PINBALL_LEVELS), np.nan)
        )
        return {
            "crps": float(np.mean(self.scaled_crps)) if self.scaled_crps else float("nan"),
            "pinball": {f"{p:g}": float(v) for p, v in zip(PINBALL_LEVELS, pin, strict=True)},
            "coverage": {f"{c:g}": self.hits[c] / max(self.points, 1) for c in COVERAGES},
            "below": {f"{p:g}": self.below[p] / max(self.points, 1) for p in PINBALL_LEVELS},
        }


@dataclass(frozen=True)
class EvaluationOptions:
    horizon: int = 16
    stride: int = 16
    n_samples: int = 100
    seed: int = 0
    progress: bool = True


def evaluate(
    pipeline: ForecastPipeline, traces: Sequence[Trace], options: EvaluationOptions | None = None
) -> dict[str, Any]:
    """Scores of the model and the three baselines over ``traces``.

    Returns a JSON-ready dict: ``methods`` -> {crps, pinball{level}, coverage{level}}
    (CRPS and pinball relative to the mean load, averaged over series; coverage as
    the fraction of forecast points inside the central interval; ``below`` as the
    fraction at or below each pinball level's quantile: a calibrated forecast has
    ``below[p]`` near ``p``), plus the counts, ``crps_improvement`` = 1 - model CRPS /
    best baseline CRPS, ``per_trace``: for each trace its ``crps`` per method and its
    ``crps_improvement``, and ``per_slice``: the same by slice name over all traces and
    both directions, with the model's ``coverage`` and ``below`` (which slices a
    miscalibration comes from).
    """
    opts = options or EvaluationOptions()
    levels = _all_levels()
    names = (MODEL, "seasonal-naive", "ewma", "rolling-quantile")
    scores = {name: _Scores() for name in names}
    per_trace = [{name: _Scores() for name in names} for _ in traces]
    per_slice: dict[str, dict[str, _Scores]] = {}
    n_series = n_forecasts = 0
    columns = [
        (k, t, i, d)
        for k, t in enumerate(traces)
        for i in range(len(t.slices))
        for d in range(len(DIRECTION_NAMES))
    ]
    bar = tqdm(columns, desc="evaluate", file=sys.stderr, disable=not opts.progress)
    for k, trace, i, d in bar:
        values = np.asarray(trace.load_bps[:, i, d], dtype=np.float64)
        period = seasonal_period(trace.interval_s, len(values) - opts.horizon)
        first = max(pipeline.config.context_length, WINDOW + (period if period > 1 else 0))
        origins = np.arange(first, len(values) - opts.horizon + 1, opts.stride, dtype=np.int64)
        if origins.size == 0:
            continue
        targets = sliding_window_view(values, opts.horizon)[origins]
        ok = np.all(np.isfinite(targets), axis=1)
        origins, targets = origins[ok], targets[ok]
        if origins.size == 0:
            continue
        n_series += 1
        n_forecasts += origins.size
        ens, quant = _model_forecast(pipeline, trace, values, origins, levels, opts)
        forecasts = {MODEL: (np.moveaxis(ens, 1, -1), quant)}
        for name, fc in _baselines(values, origins, opts, period).items():
            forecasts[name] = (fc.ensemble, fc.quantiles(levels))
        by_slice = per_slice.setdefault(trace.slices[i], {name: _Scores() for name in names})
        for name, (members, q) in forecasts.items():
            scores[name].add(members, q, targets, levels)
            per_trace[k][name].add(members, q, targets, levels)
            by_slice[name].add(members, q, targets, levels)
    methods = {name: s.summary() for name, s in scores.items()}
    best = _best_baseline(methods)
    traces_crps = []
    for trace_scores in per_trace:
        crps = {name: s.summary()["crps"] for name, s in trace_scores.items()}
        b = min(crps[name] for name in crps if name != MODEL)
        traces_crps.append({"crps": crps, "crps_improvement": _improvement(crps[MODEL], b)})
    slices = {}
    for slice_name, slice_scores in per_slice.items():
        summary = {name: s.summary() for name, s in slice_scores.items()}
        crps = {name: m["crps"] for name, m in summary.items()}
        b = min(crps[name] for name in crps if name != MODEL)
        slices[slice_name] = {
            "crps": crps,
            "crps_improvement": _improvement(crps[MODEL], b),
            "coverage": summary[MODEL]["coverage"],
            "below": summary[MODEL]["below"],
            "points": slice_scores[MODEL].points,
        }
    return {
        "methods": methods,
        "best_baseline_crps": best,
        "crps_improvement": _improvement(methods[MODEL]["crps"], best),
        "per_trace": traces_crps,
        "per_slice": slices,
        "n_series": n_series,
        "n_forecasts": n_forecasts,
        "horizon": opts.horizon,
        "n_samples": opts.n_samples,
    }


def _best_baseline(methods: dict[str, Any]) -> float:
    return float(min(methods[b]["crps"] for b in methods if b != MODEL))


def _improvement(model_crps: float, best: float) -> float:
    """1 - model / best baseline (NaN when the baseline scores 0 or nothing was scored)."""
    return 1.0 - model_crps / best if best > 0 else float("nan")


def _model_forecast(
    pipeline: ForecastPipeline,
    trace: Trace,
    values: FloatArray,
    origins: npt.NDArray[np.int64],
    levels: FloatArray,
    opts: EvaluationOptions,
) -> tuple[FloatArray, FloatArray]:
    """Sample paths ``(n, n_samples, horizon)`` and quantiles ``(n, horizon, Q)`` from all
    the history before each origin that the model reads (NaN before the trace starts)."""
    hist = pipeline.history_length(trace.interval_s)
    padded = np.concatenate([np.full(hist, np.nan), values])
    ens, quant = [], []
    chunk = origins_per_call(1, hist, ORIGIN_CHUNK)
    for first in range(0, origins.size, chunk):
        part = origins[first : first + chunk]
        contexts = sliding_window_view(padded, hist)[part]  # row o: values[o - hist : o]
        kw: dict[str, Any] = {
            "start_time": trace.start + (part - hist) * trace.interval_s,
            "interval_s": trace.interval_s,
        }
        seed = opts.seed + first
        ens.append(pipeline.sample(contexts, opts.horizon, opts.n_samples, seed=seed, **kw))
        quant.append(pipeline.quantiles(contexts, opts.horizon, levels, **kw))
    return np.concatenate(ens).astype(np.float64), np.concatenate(quant).astype(np.float64)


def _baselines(
    values: FloatArray, origins: npt.NDArray[np.int64], opts: EvaluationOptions, period: int
) -> dict[str, BaselineForecast]:
    return {
        "seasonal-naive": seasonal_naive(values, origins, opts.horizon, period),
        "ewma": ewma_gaussian(values, origins, opts.horizon, seed=opts.seed),
        "rolling-quantile": rolling_quantile(values, origins, opts.horizon),
    }


def slice_table(per_slice: dict[str, Any], tablefmt: str = "simple") -> str:
    """The model's scores by slice name (a report's ``per_slice``): CRPS against the best
    baseline, interval coverage, and the share of points at or below its quantiles."""
    from tabulate import tabulate

    rows = [
        [name, f"{100 * s['crps_improvement']:+.1f}%"]
        + [f"{100 * v:.1f}%" for v in s["coverage"].values()]
        + [f"{100 * s['below'][f'{p:g}']:.1f}%" for p in CALIBRATION_LEVELS]
        for name, s in sorted(per_slice.items())
    ]
    headers = ["slice", "CRPS vs best baseline"]
    headers += [f"cover {100 * c:g}%" for c in COVERAGES]
    headers += [f"<= q{p:g}" for p in CALIBRATION_LEVELS]
    return str(tabulate(rows, headers=headers, tablefmt=tablefmt, disable_numparse=True))


def render(report: dict[str, Any]) -> str:
    """A plain-text table of an :func:`evaluate` report."""
    from tabulate import tabulate

    rows = []
    for name, m in report["methods"].items():
        rows.append(
            [name, f"{m['crps']:.4f}"]
            + [f"{v:.4f}" for v in m["pinball"].values()]
            + [f"{100 * v:.1f}%" for v in m["coverage"].values()]
        )
    headers = ["method", "CRPS/mean"]
    headers += [f"pinball {p:g}" for p in PINBALL_LEVELS]
    headers += [f"cover {100 * c:g}%" for c in COVERAGES]
    table = tabulate(rows, headers=headers, disable_numparse=True)
    text = (
        f"{table}\n\n{report['n_series']} series, {report['n_forecasts']} forecasts of "
        f"{report['horizon']} steps; CRPS {100 * report['crps_improvement']:+.1f}% "
        "vs best baseline "
        "(positive = model better)"
    )
    if report.get("per_slice"):
        text += "\n\nthe model per slice:\n" + slice_table(report["per_slice"])
    return text
