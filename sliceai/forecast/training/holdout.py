"""The parts of a site's history that validate a fine-tune, and scoring a pipeline on
them as ``sliceai evaluate`` scores.

:func:`site_series` cuts every series into training and validation parts
(:func:`validation_blocks`: the last 15%, or one-hour blocks spread over the history);
each part keeps as history, never as targets, what the model reads before it.

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

from sliceai.forecast.config import ForecastConfig
from sliceai.forecast.metrics import CRPS_LEVELS, crps_quantiles
from sliceai.forecast.pipeline import ForecastPipeline
from sliceai.forecast.training.data import Series, series_from_traces
from sliceai.traffic import Trace

FloatArray = npt.NDArray[np.float64]

#: Length of a validation block (``FinetuneOptions.validation = "blocks"``), s.
VALIDATION_BLOCK_S = 3600.0


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


def validation_blocks(
    n_intervals: int, interval_s: float, fraction: float, how: str
) -> list[tuple[int, int]]:
    """The ``[start, stop)`` interval ranges of a series that validate: with ``how`` =
    ``tail`` its last ``fraction``; with ``blocks`` every ``round(1 / fraction)``-th block of
    :data:`VALIDATION_BLOCK_S` (the last included), so they fall at every hour of the day
    (a 7-block period and 24 hours have no common divisor) while the rest trains."""
    if how == "tail":
        return [(int(n_intervals * (1.0 - fraction)), n_intervals)]
    block = max(1, round(VALIDATION_BLOCK_S / interval_s))
    period = max(2, round(1.0 / fraction))
    n_blocks = -(-n_intervals // block)
    chosen = [j for j in range(n_blocks) if (n_blocks - 1 - j) % period == 0]
    return [(j * block, min((j + 1) * block, n_intervals)) for j in chosen]


def site_series(
    traces: Sequence[Trace], config: ForecastConfig, fraction: float, how: str = "tail"
) -> tuple[list[Series], list[Series]]:
    """Training and validation series: every column of every trace cut into the ranges
    that validate (:func:`validation_blocks`) and those between them, each keeping as
    history (never as targets) what ``config`` reads before it."""
    train: list[Series] = []
    val: list[Series] = []
    for s in series_from_traces(traces):
        n = len(s.values)
        history = config.history_length(s.interval_s)
        blocks = validation_blocks(n, s.interval_s, fraction, how)
        edges = [0, *[e for b in blocks for e in b], n]
        for k in range(len(edges) - 1):
            start, stop = edges[k], edges[k + 1]
            if stop > start:
                part = _part_of(s, start, stop, history if start else 0)
                (val if k % 2 else train).append(part)
    return train, val


def _part_of(s: Series, start: int, stop: int, history: int) -> Series:
    """Intervals ``[start, stop)`` of ``s`` as targets, up to ``history`` before as history."""
    first = max(0, start - history)
    return Series(
        s.name,
        s.values[first:stop],
        s.start + first * s.interval_s,
        s.interval_s,
        first_target=start - first,
    )


def validation_score(
    pipeline: ForecastPipeline, traces: Sequence[Trace], fraction: float, how: str
) -> float:
    """:func:`score_crps` on the validation ranges of ``traces``, averaged over them."""
    scores = []
    for t in traces:
        values = np.moveaxis(t.load_bps, 0, -1).reshape(-1, t.n_intervals)
        for start, stop in validation_blocks(t.n_intervals, t.interval_s, fraction, how):
            score = score_crps(pipeline, values[:, :stop], t.start, t.interval_s, start)
            if np.isfinite(score):
                scores.append(score)
    return float(np.mean(scores)) if scores else float("nan")
