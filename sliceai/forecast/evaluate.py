"""Score a forecaster against the baselines on traces: CRPS, pinball loss, coverage.

Everything scored is a :class:`sliceai.planning.Forecaster` and is scored the same
way, through ``quantiles_at``: the forecaster ``sliceai evaluate`` names (by default
the pooled model that ``sliceai serve`` and the replay plan with, built by
:func:`sliceai.planning.load_forecaster`) and the three baselines of
:mod:`sliceai.planning.baselines` (seasonal naive, EWMA, rolling quantile). Each
forecaster is ``reset()`` before each trace and then asked, in increasing time order,
for the forecasts at the same origins: every ``stride`` intervals from the first one
at which the scored forecaster has all the history it reads (and every baseline whose
history fits in the trace has its own), up to the last whose whole target lies in the
trace. A series is scored at the origins whose target it observed fully.

Scores come from quantiles. Pinball loss at :data:`PINBALL_LEVELS`; coverage of the
central intervals :data:`COVERAGES`; CRPS through its quantile form
``CRPS(F, y) = 2 * integral over 0..1 of pinball_tau(F^-1(tau), y) dtau``, approximated
by the midpoint rule on :data:`sliceai.forecast.metrics.CRPS_LEVELS` (0.005, 0.015, ...,
0.995): twice the mean pinball loss over those 100 levels (see
:func:`sliceai.forecast.metrics.crps_quantiles` for its error). Scores are made
scale-free per series (divided by the series' mean load over the scored targets) and
then averaged over series, so a kbit/s alarm slice counts as much as a Gbit/s eMBB
slice; all-zero series are scored for coverage but left out of the scale-free averages.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from tabulate import tabulate
from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

from sliceai.forecast.metrics import (
    CRPS_LEVELS,
    covered,
    crps_quantiles,
    interval_levels,
    pinball_loss,
)
from sliceai.planning.baselines import (
    EwmaForecaster,
    RollingQuantileForecaster,
    SeasonalNaiveForecaster,
)
from sliceai.planning.forecasters import Forecaster
from sliceai.traffic import Trace

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
PINBALL_LEVELS = (0.5, 0.9, 0.99, 0.999)
COVERAGES = (0.8, 0.95, 0.99)
#: Quantile levels whose calibration :func:`slice_table` shows (among PINBALL_LEVELS).
CALIBRATION_LEVELS = (0.5, 0.9, 0.99)
#: The report's key for the scored forecaster (its ``name`` is the report's ``forecaster``).
MODEL = "sliceai"
#: Quantile values (origins x series x steps x levels) asked of a forecaster per call.
CHUNK_VALUES = 1 << 22


class EvaluationError(ValueError):
    """Nothing to score: a trace too short for the scored forecaster, or no origin
    whose target is observed."""


def baselines() -> list[Forecaster]:
    """The forecasters the scored one is compared with, in report order."""
    return [SeasonalNaiveForecaster(), EwmaForecaster(), RollingQuantileForecaster()]


def all_levels() -> FloatArray:
    """Every quantile level asked of the forecasters: the CRPS grid, the pinball levels
    and the coverage intervals' ends (increasing, without duplicates)."""
    lv = [*CRPS_LEVELS.tolist(), *PINBALL_LEVELS]
    for c in COVERAGES:
        lv.extend(interval_levels(c))
    return np.unique(np.round(np.asarray(lv, dtype=np.float64), 12))


def _index(levels: FloatArray, wanted: Sequence[float]) -> list[int]:
    return [int(np.argmin(np.abs(levels - p))) for p in wanted]


@dataclass
class _Scores:
    """Running sums for one forecaster."""

    scaled_crps: list[float] = field(default_factory=list)
    scaled_pinball: list[FloatArray] = field(default_factory=list)
    hits: dict[float, int] = field(default_factory=lambda: dict.fromkeys(COVERAGES, 0))
    below: dict[float, int] = field(default_factory=lambda: dict.fromkeys(PINBALL_LEVELS, 0))
    points: int = 0

    def add(self, quantiles: FloatArray, truth: FloatArray, levels: FloatArray) -> None:
        """One series: ``quantiles`` ``(n, horizon, Q)`` at ``levels`` ``(Q,)`` (which
        hold :func:`all_levels`), ``truth`` ``(n, horizon)``, all bit/s."""
        scale = float(np.mean(np.abs(truth)))
        pin_idx = _index(levels, PINBALL_LEVELS)
        if scale > 0:
            grid = quantiles[..., _index(levels, CRPS_LEVELS.tolist())]
            self.scaled_crps.append(float(np.mean(crps_quantiles(grid, truth))) / scale)
            pin = pinball_loss(quantiles[..., pin_idx], truth, PINBALL_LEVELS)
            self.scaled_pinball.append(pin.reshape(-1, len(PINBALL_LEVELS)).mean(axis=0) / scale)
        for c in COVERAGES:
            i_lo, i_hi = _index(levels, interval_levels(c))
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
    progress: bool = True


def minimum_length(forecaster: Forecaster, interval_s: float, horizon: int) -> int:
    """Intervals a trace needs for one scored forecast: ``forecaster``'s history and
    the horizon."""
    return int(forecaster.history_length(interval_s)) + horizon


def origins_for(
    forecaster: Forecaster,
    compared: Sequence[Forecaster],
    interval_s: float,
    n_intervals: int,
    options: EvaluationOptions,
) -> IntArray:
    """The origins scored on a trace of ``n_intervals``: every ``stride`` from the first
    at which ``forecaster`` and each of ``compared`` whose history fits in the trace have
    all their history, to the last whose whole target lies in the trace (may be empty)."""
    h = options.horizon
    needs = [c.history_length(interval_s) for c in compared]
    fitting = [n for n in needs if n + h <= n_intervals]
    first = max([int(forecaster.history_length(interval_s)), *fitting])
    return np.arange(first, n_intervals - h + 1, options.stride, dtype=np.int64)


def series_history(trace: Trace) -> FloatArray:
    """``(n_slices * 2, T)`` bit/s: row ``2 * slice + direction``, as forecasters read it."""
    load = np.asarray(trace.load_bps, dtype=np.float64)
    return np.ascontiguousarray(np.moveaxis(load, 0, -1).reshape(-1, load.shape[0]))


def forecast_trace(
    forecaster: Forecaster,
    history: FloatArray,
    origins: IntArray,
    levels: FloatArray,
    start_time: float,
    interval_s: float,
    horizon: int,
    bar: Any = None,
) -> FloatArray:
    """``forecaster``'s quantiles ``(m, n_series, horizon, Q)`` at ``origins`` after a
    ``reset()``, asked for in increasing chunks of origins (an online learner sees
    them in time order)."""
    forecaster.reset()
    n = history.shape[0]
    per_call = max(1, CHUNK_VALUES // max(1, n * horizon * len(levels)))
    out = np.empty((len(origins), n, horizon, len(levels)))
    for first in range(0, len(origins), per_call):
        some = origins[first : first + per_call]
        q = forecaster.quantiles_at(history, some, levels, start_time, interval_s, horizon)
        out[first : first + len(some)] = np.asarray(q, dtype=np.float64)
        if bar is not None:
            bar.update(len(some))
    return out


def evaluate(
    forecaster: Forecaster,
    traces: Sequence[Trace],
    options: EvaluationOptions | None = None,
    compared: Sequence[Forecaster] | None = None,
    labels: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Scores of ``forecaster`` and of ``compared`` (default :func:`baselines`) over
    ``traces`` (``labels`` name them in errors).

    Returns a JSON-ready dict: ``forecaster`` (its ``name``), ``methods`` -> {crps,
    pinball{level}, coverage{level}, below{level}} with the scored forecaster under
    :data:`MODEL` and the others under their names (CRPS and pinball relative to the
    mean load, averaged over series; coverage as the fraction of forecast points inside
    the central interval; ``below`` as the fraction at or below each pinball level's
    quantile: a calibrated forecast has ``below[p]`` near ``p``), plus the counts,
    ``crps_improvement`` = 1 - scored CRPS / best compared CRPS, ``per_trace``: for each
    trace its ``crps`` per method and its ``crps_improvement``, and ``per_slice``: the
    same by slice name over all traces and both directions, with the scored
    forecaster's ``coverage`` and ``below`` (which slices a miscalibration comes from).

    Raises :class:`EvaluationError` when a trace is shorter than
    :func:`minimum_length` or no origin has an observed target.
    """
    opts = options or EvaluationOptions()
    others = list(baselines() if compared is None else compared)
    names = [MODEL, *(c.name for c in others)]
    if len(set(names)) != len(names):
        raise ValueError(f"compared forecasters need distinct names, got {names[1:]}")
    levels = all_levels()
    plan = []
    for k, trace in enumerate(traces):
        origins = origins_for(forecaster, others, trace.interval_s, trace.n_intervals, opts)
        if origins.size == 0:
            label = labels[k] if labels is not None else f"trace {k + 1}"
            need = minimum_length(forecaster, trace.interval_s, opts.horizon)
            raise EvaluationError(
                f"{label} has {trace.n_intervals} intervals; scoring {forecaster.name} at "
                f"{trace.interval_s:g} s needs at least {need} ({need - opts.horizon} of "
                f"history and the horizon of {opts.horizon}: "
                f"{readable_span(need * trace.interval_s)})"
            )
        plan.append(origins)
    scores = {name: _Scores() for name in names}
    per_trace = [{name: _Scores() for name in names} for _ in traces]
    per_slice: dict[str, dict[str, _Scores]] = {}
    n_series = n_forecasts = 0
    total = sum(len(o) for o in plan) * len(names)
    with tqdm(total=total, desc="evaluate", file=sys.stderr, disable=not opts.progress) as bar:
        for k, (trace, origins) in enumerate(zip(traces, plan, strict=True)):
            history = series_history(trace)
            forecasts = {
                name: forecast_trace(
                    f, history, origins, levels, trace.start, trace.interval_s, opts.horizon, bar
                )
                for name, f in zip(names, [forecaster, *others], strict=True)
            }
            steps = origins[:, None] + np.arange(opts.horizon)[None, :]
            for j in range(history.shape[0]):
                targets = history[j][steps]  # (m, horizon)
                ok = np.all(np.isfinite(targets), axis=1)
                if not ok.any():
                    continue
                n_series += 1
                n_forecasts += int(ok.sum())
                by_slice = per_slice.setdefault(
                    trace.slices[j // 2], {name: _Scores() for name in names}
                )
                for name, q in forecasts.items():
                    for s in (scores[name], per_trace[k][name], by_slice[name]):
                        s.add(q[ok, j], targets[ok], levels)
    if n_series == 0:
        raise EvaluationError(
            "no forecast origin has a fully observed target: nothing to score "
            f"(origins every {opts.stride} intervals, {opts.horizon} steps each)"
        )
    return _report(forecaster, names, scores, per_trace, per_slice, n_series, n_forecasts, opts)


def _report(
    forecaster: Forecaster,
    names: Sequence[str],
    scores: dict[str, _Scores],
    per_trace: Sequence[dict[str, _Scores]],
    per_slice: dict[str, dict[str, _Scores]],
    n_series: int,
    n_forecasts: int,
    opts: EvaluationOptions,
) -> dict[str, Any]:
    methods = {name: s.summary() for name, s in scores.items()}
    best = _best_baseline(methods)
    traces_crps = []
    for trace_scores in per_trace:
        crps = {name: s.summary()["crps"] for name, s in trace_scores.items()}
        b = _best_baseline({n: {"crps": v} for n, v in crps.items()})
        traces_crps.append({"crps": crps, "crps_improvement": _improvement(crps[MODEL], b)})
    slices = {}
    for slice_name, slice_scores in per_slice.items():
        summary = {name: s.summary() for name, s in slice_scores.items()}
        crps = {name: m["crps"] for name, m in summary.items()}
        b = _best_baseline(summary)
        slices[slice_name] = {
            "crps": crps,
            "crps_improvement": _improvement(crps[MODEL], b),
            "coverage": summary[MODEL]["coverage"],
            "below": summary[MODEL]["below"],
            "points": slice_scores[MODEL].points,
        }
    return {
        "forecaster": forecaster.name,
        "compared": list(names[1:]),
        "methods": methods,
        "best_baseline_crps": best,
        "crps_improvement": _improvement(methods[MODEL]["crps"], best),
        "per_trace": traces_crps,
        "per_slice": slices,
        "n_series": n_series,
        "n_forecasts": n_forecasts,
        "horizon": opts.horizon,
        "stride": opts.stride,
        "crps_levels": f"{CRPS_LEVELS[0]:g}..{CRPS_LEVELS[-1]:g} ({len(CRPS_LEVELS)} levels)",
    }


def _best_baseline(methods: dict[str, Any]) -> float:
    """The lowest CRPS among the compared forecasters (NaN when none was compared)."""
    return float(min((methods[b]["crps"] for b in methods if b != MODEL), default=np.nan))


def _improvement(model_crps: float, best: float) -> float:
    """1 - model / best baseline (NaN when the baseline scores 0 or nothing was scored)."""
    return 1.0 - model_crps / best if best > 0 else float("nan")


def slice_table(per_slice: dict[str, Any], tablefmt: str = "simple") -> str:
    """The scored forecaster's scores by slice name (a report's ``per_slice``): CRPS
    against the best baseline, interval coverage, and the share of points at or below
    its quantiles."""
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
    scored = f"{MODEL} = {report['forecaster']}"
    if report.get("model"):
        scored += f" (--model {report['model']})"
    text = (
        f"scored: {scored}\n\n{table}\n\n"
        f"{report['n_series']} series, {report['n_forecasts']} forecasts of "
        f"{report['horizon']} steps; CRPS {100 * report['crps_improvement']:+.1f}% "
        f"vs best baseline (positive = {MODEL} better; CRPS from quantiles "
        f"{report['crps_levels']})"
    )
    if report.get("per_slice"):
        text += f"\n\n{MODEL} per slice:\n" + slice_table(report["per_slice"])
    return text


def readable_span(seconds: float) -> str:
    """A duration in the unit that reads best: ``48 s``, ``4.3 min``, ``2.5 h``, ``3 days``."""
    for unit, size in (("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"
