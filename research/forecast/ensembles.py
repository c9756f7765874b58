"""Sample-path ensembles for the studies that score with the ensemble CRPS
(:func:`sliceai.forecast.metrics.crps_ensemble`): the model's paths and an EWMA
Gaussian ensemble, one series at a time.

``sliceai evaluate`` scores quantiles (:mod:`sliceai.forecast.evaluate`); the studies
(the oracle bound, the session filter, the fitted law) compare sample paths with an
oracle's, so they draw them here.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from sliceai.forecast.features import origins_per_call
from sliceai.forecast.pipeline import ForecastPipeline
from sliceai.planning.baselines import EwmaForecaster
from sliceai.traffic import Trace

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Members of :func:`ewma_ensemble`.
EWMA_MEMBERS = 100
#: Sample paths per origin of :func:`model_paths`.
N_SAMPLES = 100
#: Forecast origins per model call, at most (see ``origins_per_call``).
ORIGIN_CHUNK = 512


def ewma_ensemble(
    values: FloatArray,
    origins: IntArray,
    horizon: int,
    seed: int = 0,
    members: int = EWMA_MEMBERS,
) -> FloatArray:
    """``(len(origins), horizon, members)`` bit/s, >= 0: draws of the Gaussian band of
    :class:`sliceai.planning.EwmaForecaster` at each origin of the series ``values``
    (the same at every step)."""
    mean, std = EwmaForecaster().moments(np.asarray(values, dtype=np.float64)[None, :], origins)
    m, s = mean[:, 0], std[:, 0]
    rng = np.random.default_rng(seed)
    draws = m[:, None, None] + s[:, None, None] * rng.standard_normal(
        (len(origins), horizon, members)
    )
    out: FloatArray = np.maximum(draws, 0.0)
    return out


def model_paths(
    pipeline: ForecastPipeline,
    trace: Trace,
    values: FloatArray,
    origins: IntArray,
    horizon: int,
    n_samples: int = N_SAMPLES,
    seed: int = 0,
) -> FloatArray:
    """Sample paths ``(len(origins), n_samples, horizon)`` of the series ``values`` (one
    column of ``trace``) from all the history before each origin that the model reads
    (NaN before the trace starts)."""
    hist = pipeline.history_length(trace.interval_s)
    padded = np.concatenate([np.full(hist, np.nan), np.asarray(values, dtype=np.float64)])
    out = []
    chunk = origins_per_call(1, hist, ORIGIN_CHUNK)
    for first in range(0, len(origins), chunk):
        part = np.asarray(origins[first : first + chunk])
        contexts = sliding_window_view(padded, hist)[part]  # row o: values[o - hist : o]
        out.append(
            pipeline.sample(
                contexts,
                horizon,
                n_samples,
                seed=seed + first,
                start_time=trace.start + (part - hist) * trace.interval_s,
                interval_s=trace.interval_s,
            )
        )
    return np.concatenate(out).astype(np.float64)
