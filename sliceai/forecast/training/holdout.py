"""Scoring a pipeline on the later part of a history, as ``sliceai evaluate`` scores.

:func:`score_crps` is what the fine-tune reports (:mod:`.finetune`) and what the
service's adaptation loop (:mod:`sliceai.api.adapt`) decides a swap with: every
``stride`` intervals from an origin on, the model forecasts ``horizon`` steps from the
history before it, and the CRPS comes from its exact quantiles at
:data:`~sliceai.forecast.metrics.CRPS_LEVELS`
(:func:`~sliceai.forecast.metrics.crps_quantiles`, as ``sliceai evaluate`` computes
it), so two models are compared without sampling noise (beyond the model's
``max_horizon`` the quantiles are read off sample paths drawn with fixed seeds).
Scores are relative to each series' mean target and averaged over the series with load.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from sliceai.forecast.metrics import CRPS_LEVELS, crps_quantiles
from sliceai.forecast.pipeline import ForecastPipeline
from sliceai.traffic import Trace

FloatArray = npt.NDArray[np.float64]


def score_crps(
    pipeline: ForecastPipeline,
    values: FloatArray,
    start: float,
    interval_s: float,
    first: int,
    horizon: int = 16,
    stride: int = 16,
    max_origins: int = 2000,
) -> float:
    """Scale-free CRPS of ``pipeline`` on ``values`` ``(n_series, T)`` bit/s (NaN:
    missing; ``start``: epoch s of column 0) from the origins ``first``, ``first +
    stride``, ... whose whole target is observed (at most ``max_origins`` per series,
    spread evenly), each reading the history before it (module docstring); NaN when
    nothing could be scored."""
    values = np.asarray(values, dtype=np.float64)
    n_series, length = values.shape
    hist = pipeline.history_length(interval_s)
    origins = np.arange(max(first, 1), length - horizon + 1, stride, dtype=np.int64)
    if origins.size > max_origins:
        origins = origins[np.linspace(0, origins.size - 1, max_origins).round().astype(np.int64)]
    if origins.size == 0:
        return float("nan")
    padded = np.concatenate([np.full((n_series, hist), np.nan), values], axis=1)
    scores = []
    for row in range(n_series):
        targets = sliding_window_view(values[row], horizon)[origins]
        ok = np.all(np.isfinite(targets), axis=1)
        some, targets = origins[ok], targets[ok]
        scale = float(np.mean(np.abs(targets))) if targets.size else 0.0
        if not scale > 0:
            continue
        contexts = sliding_window_view(padded[row], hist)[some]  # values[o - hist : o]
        q = pipeline.quantiles(
            contexts,
            horizon,
            CRPS_LEVELS,
            start_time=start + (some - hist) * interval_s,
            interval_s=interval_s,
            seed=row,  # beyond max_horizon they are read off sample paths
        )
        crps = crps_quantiles(q.astype(np.float64), targets)
        scores.append(float(np.mean(crps)) / scale)
    return float(np.mean(scores)) if scores else float("nan")


def score_tail(pipeline: ForecastPipeline, traces: Sequence[Trace], fraction: float) -> float:
    """:func:`score_crps` on the last ``fraction`` of each trace, averaged over the traces
    with a score (NaN without one)."""
    scores = [
        score_crps(
            pipeline,
            np.moveaxis(t.load_bps, 0, -1).reshape(-1, t.n_intervals),
            t.start,
            t.interval_s,
            int(t.n_intervals * (1.0 - fraction)),
        )
        for t in traces
    ]
    finite = [x for x in scores if np.isfinite(x)]
    return float(np.mean(finite)) if finite else float("nan")
