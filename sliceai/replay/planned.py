"""Solver-backed allocators: the planner (:mod:`sliceai.planning`) in the replay (the
``oracle`` is in :mod:`sliceai.replay.oracle`).

- ``rolling-quantile``: :class:`sliceai.planning.RollingQuantileForecaster` (the last
  300 intervals' empirical quantiles) through the planner;
- ``sliceai``: the generative model (``SLICEAI_MODEL`` or the bundled checkpoint, on
  ``SLICEAI_DEVICE`` or the best device) pooled with EWMA and the rolling quantile
  (:func:`sliceai.planning.loading.pooled`), through the planner with online risk control.

:class:`PlannerAllocator` keeps the history the planner reads, asks it for the
forecasts of a whole chunk at once (row ``t`` reads the intervals before ``t``
only) and then steps the planner through the chunk's intervals, as the live loop
steps it through its own. Interval 0 of a replay has no history and gets the static
allocation.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import numpy as np

from sliceai.planning import (
    Forecaster,
    Planner,
    PlannerSettings,
    RollingQuantileForecaster,
    load_forecaster,
)
from sliceai.planning.loading import DEFAULT_MODEL, pooled
from sliceai.policy import Policy
from sliceai.replay.allocators import FloatArray, PolicyAllocator


class PlannerAllocator(PolicyAllocator):
    """A forecaster through :class:`sliceai.planning.Planner` (see module doc).

    ``forecaster``: the forecaster, or a callable that makes one at :meth:`start`
    (so that building the allocator loads no model).
    """

    def __init__(
        self,
        name: str,
        forecaster: Forecaster | Callable[[], Forecaster],
        settings: PlannerSettings | None = None,
    ) -> None:
        self.name = name
        self._forecaster = forecaster
        self.settings = settings

    def start(
        self, policy: Policy, trace_slices: tuple[str, ...], interval_s: float, start_time: float
    ) -> None:
        super().start(policy, trace_slices, interval_s, start_time)
        made = self._forecaster
        forecaster = made if isinstance(made, Forecaster) else made()
        forecaster.reset()  # a new trace: nothing learnt online carries over
        self.planner = Planner(policy, forecaster, self.settings)
        self.keep = self.planner.history_length(interval_s)
        # The `keep` intervals before the next chunk, row 2 * slice + direction; NaN = none.
        self.history = np.full((2 * len(policy.slices), self.keep), np.nan)
        self.start_time = start_time
        self.seen = 0
        self.last_row = np.full((len(policy.slices), 2), np.nan)

    def allocate_chunk(self, load: FloatArray) -> FloatArray:
        raw = np.asarray(load, dtype=np.float64)
        n = raw.shape[0]
        ext = np.concatenate([self.history, raw.reshape(n, -1).T], axis=1)
        origins = self.keep + np.arange(n)  # row t reads ext[:, : keep + t]
        first = self.start_time + (self.seen - self.keep) * self.interval_s
        forecasts = self.planner.forecast(ext, origins, first, self.interval_s)
        out = np.empty_like(raw)
        before = np.concatenate([self.last_row[np.newaxis], raw[:-1]])  # row t: interval t - 1
        for t, forecast in enumerate(forecasts):
            if self.seen + t == 0:  # nothing seen at all before the first interval
                out[t] = self.static
            else:
                out[t] = self.planner.step(forecast, measured_bps=before[t]).rates_bps
        self.last_row = raw[-1].copy()
        self.history = ext[:, -self.keep :].copy()
        self.seen += n
        return out


@functools.lru_cache(maxsize=4)
def model_forecaster(model: str | None, device: str) -> Forecaster:
    """The model alone, loaded once per (checkpoint, device) in a process (it keeps no
    state; every replay pools it afresh)."""
    return load_forecaster(model, device, pool=False)


def rolling_quantile_allocator() -> PlannerAllocator:
    """The baseline: rolling empirical quantiles through the planner, each slice covered
    to its ``1 - risk`` quantile as forecast (no risk control, no backlog drained)."""
    return PlannerAllocator(
        "rolling-quantile",
        RollingQuantileForecaster(),
        PlannerSettings(risk_control=False, drain_backlog=False),
    )


def sliceai_allocator(model: str | None = None, device: str | None = None) -> PlannerAllocator:
    """What ``sliceai serve`` runs: the model (a checkpoint; default ``SLICEAI_MODEL`` or
    the bundled one, on ``device``, default ``SLICEAI_DEVICE`` or the best one) pooled
    with the baselines, through the planner with risk control."""
    path = model if model is not None else os.environ.get("SLICEAI_MODEL")
    on = device or os.environ.get("SLICEAI_DEVICE", "auto")
    if path == DEFAULT_MODEL:
        path = None
    return PlannerAllocator("sliceai", lambda: pooled(model_forecaster(path, on)))
