"""The generative model as a :class:`sliceai.planning.Forecaster`.

:class:`ModelForecaster` is what ``sliceai serve``, the ``sliceai`` replay allocator
and ``sliceai evaluate`` forecast with (built by
:func:`sliceai.planning.load_forecaster`). At each origin it hands the model the
history the model reads (its context and, at clocks where it reads one, a window
one day back: ``ForecastConfig.history_length``, capped at :data:`MAX_HISTORY`),
left-padded as missing where the history is shorter, so a forecast depends on that
window alone, whether the origins come one at a time (the live loop) or thousands
at once (the replay, the evaluation; batched :data:`ORIGIN_CHUNK` origins per model
call, fewer where the histories are long).
"""

from __future__ import annotations

import numpy as np
import torch

from sliceai.forecast.features import origins_per_call
from sliceai.forecast.pipeline import ForecastPipeline
from sliceai.planning.forecasters import FloatArray, Forecaster, IntArray, trailing_windows

#: Most intervals of history one forecast reads: a day back is within reach from 30 s
#: intervals up (the clocks at which the bundled model reads yesterday); a model that
#: wants more gets its context only, as in training windows without yesterday.
MAX_HISTORY = 4096
#: Origins per model call, at most.
ORIGIN_CHUNK = 128


class ModelForecaster(Forecaster):
    """Quantiles from a :class:`ForecastPipeline` (marginal, exact; float64 out)."""

    name = "model"

    def __init__(self, pipeline: ForecastPipeline) -> None:
        self.pipeline = pipeline

    @classmethod
    def load(
        cls, path: str | None = None, device: str = "auto", threads: int | None = None
    ) -> ModelForecaster:
        """A checkpoint directory (None: the bundled default); ForecastError if bad.
        ``threads``: torch threads for this process (None: leave torch's default)."""
        if threads is not None:
            torch.set_num_threads(threads)
        return cls(ForecastPipeline.load(path, device=device))

    def history_length(self, interval_s: float) -> int:
        wanted = int(self.pipeline.history_length(interval_s))
        if wanted <= MAX_HISTORY:
            return wanted
        return int(self.pipeline.at(interval_s).config.context_length)

    def quantiles_at(
        self,
        history: FloatArray,
        origins: IntArray,
        levels: FloatArray,
        start_time: float,
        interval_s: float,
        horizon: int = 1,
    ) -> FloatArray:
        org = np.asarray(origins, dtype=np.int64)
        n_series = history.shape[0]
        width = self.history_length(interval_s)
        per_call = origins_per_call(n_series, width, ORIGIN_CHUNK)
        out = np.empty((len(org), n_series, horizon, len(levels)))
        for first in range(0, len(org), per_call):
            some = org[first : first + per_call]
            windows = trailing_windows(history, some, width)  # (m, n, width)
            starts = np.repeat(start_time + (some - width) * interval_s, n_series)
            q = self.pipeline.quantiles(
                windows.reshape(-1, width),
                horizon,
                levels,
                start_time=starts,
                interval_s=interval_s,
            )
            out[first : first + len(some)] = np.asarray(q, dtype=np.float64).reshape(
                len(some), n_series, horizon, -1
            )
        return out
