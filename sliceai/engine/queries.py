"""``GetForecast``: quantiles of the coming intervals for some slices, from the history
the control loop keeps, asked of the planner's forecaster read-only
(:meth:`~sliceai.planning.Forecaster.for_queries`), so an application's question never
moves what the planner learnt. The limits on size and concurrency are the engine's
(:meth:`sliceai.engine.Engine.forecast`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sliceai.engine.errors import InvalidInput, Unavailable
from sliceai.engine.grants import resolve_slice
from sliceai.engine.loop import History
from sliceai.planning import Forecaster, RollingQuantileForecaster
from sliceai.planning.forecasters import guarded_quantiles
from sliceai.policy import Policy

MAX_FORECAST_LEVELS = 32
#: Levels of a query that names none.
DEFAULT_LEVELS = (0.1, 0.5, 0.9)


@dataclass(frozen=True)
class ForecastResult:
    """Quantiles ``values`` ``(n_selected, 2, horizon, Q)`` bit/s for ``slices`` at ``levels``."""

    slices: tuple[str, ...]
    levels: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]
    start: float
    interval_s: float
    fallback: bool


def forecast_query(
    forecaster: Forecaster,
    policy: Policy,
    history: History | None,
    slices: Sequence[str],
    horizon: int,
    levels: Sequence[float],
    now: float,
    interval_s: float,
) -> ForecastResult:
    """The forecast of ``slices`` (all when empty) at ``levels`` over ``horizon``
    intervals after ``history``; a broken model or any non-finite value is replaced by
    rolling quantiles for those series and flagged."""
    lv = np.asarray(list(levels) or DEFAULT_LEVELS, dtype=np.float64)
    if len(lv) > MAX_FORECAST_LEVELS or not ((lv > 0) & (lv < 1)).all():
        raise InvalidInput(
            f"levels must be 1..{MAX_FORECAST_LEVELS} values strictly between 0 and 1"
        )
    lv = np.sort(lv)
    names = tuple(resolve_slice(policy, s) for s in slices) or policy.slice_names
    if history is None or history.slice_names != policy.slice_names:
        raise Unavailable("no forecast yet: the loop has not run on this policy")
    idx = np.array([policy.slice_index(n) for n in names])
    series = history.data[idx][:, :, history.capacity - history.count :].reshape(
        len(idx) * 2, history.count
    )
    start = now - interval_s * history.count
    rows = (2 * idx[:, None] + np.arange(2)[None, :]).ravel()  # the planner's series rows
    q, _, notes = guarded_quantiles(
        forecaster.for_queries(rows),
        RollingQuantileForecaster(),
        series,
        np.array([series.shape[1]], dtype=np.int64),
        lv,
        start,
        interval_s,
        horizon,
    )
    values = q[0].reshape(len(idx), 2, horizon, len(lv))
    return ForecastResult(names, lv, values, now, interval_s, bool(notes[0]))
