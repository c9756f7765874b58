"""The ``sliceai`` replay allocator: model quantiles into the solver, interval by interval.

Every ``block`` intervals (an origin) the model forecasts the next ``block`` intervals
of every (slice, direction) from the history before the origin that the model reads
(``config.history_length``: the context, and a day back when the model reads a seasonal
window at the trace's clock); the origins of a replay chunk go through the model in
batches of :data:`ORIGIN_CHUNK`. Row ``t`` uses the forecast made at the last origin
``<= t``, so it depends only on intervals before ``t``. The quantiles (the levels below
plus each slice's ``1 - risk``) feed :class:`sliceai.replay.QuantilePlanner`, the
replay's shared quantiles -> solver helper. Importing this module registers the
allocator under ``sliceai``.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from sliceai.forecast.features import origins_per_call
from sliceai.forecast.pipeline import ForecastPipeline
from sliceai.policy import Policy
from sliceai.replay.allocators import PolicyAllocator, register_allocator
from sliceai.replay.planning import QuantilePlanner

FloatArray = npt.NDArray[np.float64]

#: Quantile levels fed to the solver besides every slice's ``1 - risk``.
LEVELS: tuple[float, ...] = (0.5, 0.75, 0.9, 0.95, 0.99)
#: Intervals forecast per origin.
DEFAULT_BLOCK = 1
#: Origins per model call, at most: every one carries the history the model reads (up to
#: a day; fewer origins per call where that is long, see ``origins_per_call``).
ORIGIN_CHUNK = 128


@functools.lru_cache(maxsize=4)
def _pipeline(model: str | None, device: str) -> ForecastPipeline:
    return ForecastPipeline.load(model, device=device)


class SliceaiAllocator(PolicyAllocator):
    """Forecast-driven allocation (see module doc).

    ``model``: checkpoint directory (None: ``SLICEAI_MODEL`` or the bundled default);
    ``device``: ``auto``, ``cpu`` or ``cuda`` (default ``SLICEAI_DEVICE`` or auto).
    """

    name = "sliceai"

    def __init__(
        self,
        model: str | None = None,
        device: str | None = None,
        block: int = DEFAULT_BLOCK,
        warm: bool = False,
    ) -> None:
        if block < 1:
            raise ValueError(f"block must be at least 1 interval, got {block}")
        self.model = model if model is not None else os.environ.get("SLICEAI_MODEL")
        self.device = device or os.environ.get("SLICEAI_DEVICE", "auto")
        self.block = block
        self.warm = warm

    def start(
        self, policy: Policy, trace_slices: tuple[str, ...], interval_s: float, start_time: float
    ) -> None:
        super().start(policy, trace_slices, interval_s, start_time)
        self.pipeline = _pipeline(self.model, self.device)
        risk_levels = {round(1.0 - s.risk, 9) for s in policy.slices}
        self.levels = tuple(sorted(set(LEVELS) | risk_levels))
        self.planner = QuantilePlanner(policy, self.levels, warm=self.warm)
        # Each slice's distribution is cut at its own 1 - risk quantile: above it the
        # solver sees no gain, so no slice is given capacity its risk does not ask for.
        target = np.array([round(1.0 - sl.risk, 9) for sl in policy.slices])
        lv = np.array(self.levels)
        self.cut_index = np.searchsorted(lv, target)  # (S,) index of each slice's level
        self.start_time = start_time
        self.seen = 0  # intervals before the current chunk
        self.hist = self.pipeline.history_length(interval_s)
        self.keep = self.hist + self.block
        self.history = np.full((self.keep, len(policy.slices), 2), np.nan)  # raw, NaN = missing

    def allocate_chunk(self, load: FloatArray) -> FloatArray:
        raw = np.asarray(load, dtype=np.float64)
        n, n_slices = raw.shape[0], raw.shape[1]
        c, block = self.hist, self.block
        ext = np.concatenate([self.history, raw], axis=0)  # ext[k] = interval seen - keep + k
        offset = self.seen - self.keep
        absolute = self.seen + np.arange(n)
        origin_of_row = (absolute // block) * block
        origins = np.unique(origin_of_row)
        # History of origin o: intervals [o - c, o), i.e. ext[o - c - offset : o - offset].
        series = np.moveaxis(ext, 0, -1).reshape(n_slices * 2, -1)  # (S*2, len(ext))
        windows = sliding_window_view(series, c, axis=1)  # (S*2, len(ext) - c + 1, c)
        # The history starts as `keep` missing intervals, so every context is in `ext`.
        parts = []
        chunk = origins_per_call(n_slices * 2, c, ORIGIN_CHUNK)  # bounds the history copies
        for first in range(0, len(origins), chunk):
            some = origins[first : first + chunk]
            flat = windows[:, some - c - offset].reshape(-1, c)  # (S*2 * len(some), c)
            starts = np.tile(self.start_time + (some - c) * self.interval_s, n_slices * 2)
            q = self.pipeline.quantiles(
                flat, block, self.levels, start_time=starts, interval_s=self.interval_s
            )
            parts.append(q.reshape(n_slices * 2, len(some), block, -1))
        q_all = np.concatenate(parts, axis=1)
        q64: FloatArray = q_all.reshape(n_slices, 2, len(origins), block, -1).astype(np.float64)
        which = np.searchsorted(origins, origin_of_row)
        step = absolute - origin_of_row
        per_row = np.moveaxis(q64[:, :, which, step, :], 2, 0)  # (n, S, 2, Q)
        for k, cut in enumerate(self.cut_index):
            per_row[:, k, :, cut + 1 :] = per_row[:, k, :, cut : cut + 1]
        out = self.planner.plan(per_row)
        out[absolute == 0] = self.static  # nothing seen at all before the first interval
        self.history = ext[-self.keep :].copy()
        self.seen += n
        return out


register_allocator("sliceai", SliceaiAllocator)
