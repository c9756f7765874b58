"""Synthetic traces from the model: continue a trace for as long as asked."""

from __future__ import annotations

import sys

import numpy as np
from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

from sliceai.forecast.pipeline import ForecastPipeline
from sliceai.traffic import Trace

#: Intervals generated per call (a progress-bar step); a multiple of the model's block.
CHUNK_INTERVALS = 1024


def continue_trace(
    pipeline: ForecastPipeline, like: Trace, n_intervals: int, seed: int = 0
) -> Trace:
    """A sampled continuation of ``like``: ``n_intervals`` intervals from where it ends.

    Every (slice, direction) follows one sample path of the model, conditioned on the
    history of ``like`` the model reads and on its own earlier samples.
    """
    n_slices = len(like.slices)
    c = pipeline.history_length(like.interval_s)
    first = max(0, like.n_intervals - c)
    history = np.moveaxis(like.load_bps[first:], 0, -1).reshape(n_slices * 2, -1)
    start = like.start + first * like.interval_s
    # Scale by the long-run mean: a slice idle at the end of ``like`` can still start sessions.
    observed = np.moveaxis(like.load_bps, 0, -1).reshape(n_slices * 2, -1)
    finite = np.isfinite(observed)
    count = finite.sum(axis=1)
    total = np.where(finite, observed, 0.0).sum(axis=1)
    long_run = np.divide(total, count, out=np.zeros(n_slices * 2), where=count > 0)
    pieces = []
    done = 0
    with tqdm(total=n_intervals, desc="generate", unit="interval", file=sys.stderr) as bar:
        while done < n_intervals:
            step = min(CHUNK_INTERVALS, n_intervals - done)
            path = pipeline.sample(
                history,
                step,
                1,
                start_time=start,
                interval_s=like.interval_s,
                seed=seed + done,
                scale_bps=long_run,
            )
            piece = path[:, 0, :].astype(np.float64)
            pieces.append(piece)
            history = np.concatenate([history, piece], axis=1)[:, -c:]
            start = (
                like.start + (like.n_intervals + done + step - history.shape[1]) * like.interval_s
            )
            done += step
            bar.update(step)
    load = np.concatenate(pieces, axis=1).reshape(n_slices, 2, n_intervals)
    return Trace(
        like.start + like.n_intervals * like.interval_s,
        like.interval_s,
        like.slices,
        np.moveaxis(load, -1, 0),
    )
