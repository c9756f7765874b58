"""Forecasters: the one way a demand forecast enters sliceai.

A forecaster gives quantiles of future demand for every series (a series is one
slice in one direction: row ``2 * slice + direction``) from the history before an
origin. The planner (:mod:`sliceai.planning.planner`), the replay allocators, the
live service and ``sliceai evaluate`` all hold a :class:`Forecaster` and call it the
same way; what differs is only how many origins they ask for at once.

Shapes and units (every method): ``history`` ``(n_series, T)`` bit/s, oldest first,
NaN where missing; ``start_time`` the epoch s of ``history[:, 0]``; ``levels``
``(Q,)`` strictly increasing in (0, 1). A forecast made at origin ``o`` reads
``history[:, :o]`` only and covers intervals ``o .. o + horizon - 1``.
Quantiles come back float64 bit/s, finite, >= 0 and non-decreasing along ``Q``.
A forecaster raises on failure; the planner then falls back (see there).

The simple forecasters (rolling empirical quantiles, EWMA with a Gaussian band,
seasonal naive) live in :mod:`sliceai.planning.baselines`; the generative model's
adapter in :mod:`sliceai.forecast.forecaster`; :func:`sliceai.planning.loading.load_forecaster`
builds the one a user names (``--model``), loading torch only when the model is asked for.
"""

from __future__ import annotations

import abc

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Intervals of history a forecaster reads unless it says otherwise.
DEFAULT_HISTORY = 300


class Forecaster(abc.ABC):
    """Quantiles of future demand per series (shapes and units: module docstring)."""

    #: Short name for reports and plan explanations.
    name: str = ""
    #: What went wrong at each origin of the last :meth:`quantiles_at` call ("" where
    #: nothing did), for a forecaster that recovers from its own parts' failures.
    last_notes: list[str] = []  # noqa: RUF012 (read-only default; instances assign their own)

    def history_length(self, interval_s: float) -> int:
        """Intervals of history this forecaster reads at ``interval_s``."""
        return DEFAULT_HISTORY

    def reset(self) -> None:
        """Forget what was learnt online (a new trace or a new set of series)."""
        self.last_notes = []

    def online_state(self) -> object:
        """What this forecaster has learnt online, for :meth:`load_online_state` in another
        process (picklable; None for a forecaster that learns nothing online)."""
        return None

    def load_online_state(self, state: object) -> None:
        """Take over :meth:`online_state` of a forecaster of the same make (nothing to
        take over here)."""
        del state

    def for_queries(self, rows: IntArray) -> Forecaster:
        """A forecaster for side queries (``GetForecast``) on the series ``rows`` of those
        this one plans for: it answers as this one would for them and learns nothing from
        the query, so callers cannot disturb what the planner has learnt online. A
        forecaster without online state returns itself."""
        return self

    @abc.abstractmethod
    def quantiles_at(
        self,
        history: FloatArray,
        origins: IntArray,
        levels: FloatArray,
        start_time: float,
        interval_s: float,
        horizon: int = 1,
    ) -> FloatArray:
        """Forecasts made at each of ``origins`` ``(m,)`` (each in ``1 .. T``), ``(m,
        n_series, horizon, Q)``: row ``k`` reads ``history[:, :origins[k]]`` only."""

    def quantiles(
        self,
        history: FloatArray,
        levels: FloatArray,
        start_time: float,
        interval_s: float,
        horizon: int = 1,
    ) -> FloatArray:
        """The forecast after the whole ``history``, ``(n_series, horizon, Q)``."""
        origin = np.array([history.shape[1]], dtype=np.int64)
        out: FloatArray = self.quantiles_at(
            history, origin, levels, start_time, interval_s, horizon
        )
        return np.asarray(out[0])


def check_quantiles(q: FloatArray, shape: tuple[int, ...]) -> FloatArray:
    """``q`` as float64 if it has ``shape`` and is finite; made >= 0 and monotone along
    the last axis. Raises ValueError otherwise (the planner's cue to fall back)."""
    out = np.asarray(q, dtype=np.float64)
    if out.shape != shape:
        raise ValueError(f"forecaster returned shape {out.shape}, expected {shape}")
    if not np.isfinite(out).all():
        raise ValueError("forecaster returned non-finite quantiles")
    return np.maximum.accumulate(np.maximum(out, 0.0), axis=-1)


def guarded_quantiles(
    forecaster: Forecaster,
    fallback: Forecaster,
    history: FloatArray,
    origins: IntArray,
    levels: FloatArray,
    start_time: float,
    interval_s: float,
    horizon: int = 1,
) -> tuple[FloatArray, npt.NDArray[np.bool_], list[str]]:
    """``forecaster``'s quantiles at ``origins`` with ``fallback``'s standing in for every
    origin and series where it raised, gave the wrong shape or any non-finite value (at
    any step or level). Returns the quantiles ``(m, n_series, horizon, Q)`` (checked by
    :func:`check_quantiles`), which ``(m, n_series)`` the fallback replaced, and a note
    per origin: what went wrong there ("" where nothing did), including the failures the
    forecaster recovered from itself (its ``last_notes``, e.g. a pool's failed member).

    Every forecast sliceai serves or plans from passes through here (the planner and
    the service's forecast query), so no non-finite value is ever served as normal."""
    org = np.asarray(origins, dtype=np.int64)
    shape = (len(org), history.shape[0], horizon, len(levels))
    try:
        q = np.array(
            forecaster.quantiles_at(history, org, levels, start_time, interval_s, horizon),
            dtype=np.float64,
        )
        if q.shape != shape:
            raise ValueError(f"returned shape {q.shape}, expected {shape}")
        bad = np.asarray(~np.isfinite(q).all(axis=(2, 3)))
        why = "returned non-finite quantiles"
    except Exception as exc:  # any failure of the model: the fallback stands in
        q = np.zeros(shape)
        bad = np.ones(shape[:2], dtype=bool)
        why = f"failed ({type(exc).__name__}: {str(exc)[:200]})"
    notes = [""] * len(org)
    own = list(getattr(forecaster, "last_notes", []))
    if len(own) == len(org):  # the forecaster recovered from its parts' failures itself
        notes = [str(n) for n in own]
    rows = bad.any(axis=1)
    if rows.any():
        q[rows] = np.where(
            bad[rows][:, :, None, None],
            fallback.quantiles_at(history, org[rows], levels, start_time, interval_s, horizon),
            q[rows],
        )
        for k in np.flatnonzero(rows).tolist():
            where = "" if bad[k].all() else f" for {int(bad[k].sum())} of {shape[1]} series"
            note = f"{forecaster.name} {why}{where}; {fallback.name} used"
            notes[k] = f"{notes[k]}; {note}" if notes[k] else note
    return check_quantiles(q, shape), bad, notes


def trailing_windows(history: FloatArray, origins: IntArray, window: int) -> FloatArray:
    """``(m, n_series, window)``: the ``window`` intervals before each origin, NaN where
    the history is missing or starts later."""
    n, t = history.shape
    padded = np.concatenate([np.full((n, window), np.nan), history], axis=1)
    idx = np.asarray(origins, dtype=np.int64)[:, None] + np.arange(window)[None, :]
    if idx.size and (idx.min() < 0 or idx.max() >= t + window):
        raise ValueError(f"origins must lie in 0..{t}")
    return np.asarray(padded[:, idx].transpose(1, 0, 2))


def nan_quantiles(rows: FloatArray, levels: FloatArray) -> FloatArray:
    """Quantiles (numpy's linear method) of each row of ``rows`` ``(..., W)`` ignoring NaN,
    ``(..., Q)``; 0 for a row with no value."""
    flat = rows.reshape(-1, rows.shape[-1])
    count = (~np.isnan(flat)).sum(axis=1)
    out = np.zeros((flat.shape[0], len(levels)))
    some = count > 0
    if some.any():
        ordered = np.sort(flat[some], axis=1)  # NaN sort last
        c = count[some][:, None]
        pos = np.asarray(levels)[None, :] * (c - 1)
        below = np.floor(pos).astype(np.intp)
        above = np.minimum(below + 1, c - 1)
        lo = np.take_along_axis(ordered, below, axis=1)
        hi = np.take_along_axis(ordered, above, axis=1)
        out[some] = lo + (hi - lo) * (pos - below)
    return out.reshape(*rows.shape[:-1], len(levels))


class UnavailableForecaster(Forecaster):
    """Stands in for a model that failed to load: every forecast raises, so every plan
    comes from the planner's fallback and says why."""

    def __init__(self, name: str, why: str) -> None:
        self.name = name
        self.why = why

    def quantiles_at(
        self,
        history: FloatArray,
        origins: IntArray,
        levels: FloatArray,
        start_time: float,
        interval_s: float,
        horizon: int = 1,
    ) -> FloatArray:
        raise RuntimeError(f"{self.name} not loaded: {self.why}")
