"""A forecaster that remembers its answers: a study that scores the model alone and
pooled asks the model the same questions twice."""

from __future__ import annotations

import numpy as np

from sliceai.planning import Forecaster
from sliceai.planning.forecasters import FloatArray, IntArray


class Cached(Forecaster):
    """Remembers ``inner``'s answers by (history, origins, levels, horizon): the pool asks
    the model what the model alone was asked."""

    def __init__(self, inner: Forecaster) -> None:
        self.inner = inner
        self.name = inner.name
        self.memo: dict[tuple[int, bytes, bytes, int], FloatArray] = {}

    def history_length(self, interval_s: float) -> int:
        return self.inner.history_length(interval_s)

    def quantiles_at(
        self,
        history: FloatArray,
        origins: IntArray,
        levels: FloatArray,
        start_time: float,
        interval_s: float,
        horizon: int = 1,
    ) -> FloatArray:
        key = (hash(history.tobytes()), np.asarray(origins).tobytes(), levels.tobytes(), horizon)
        if key not in self.memo:
            self.memo[key] = self.inner.quantiles_at(
                history, origins, levels, start_time, interval_s, horizon
            )
        return self.memo[key]
