"""The model's forecasts, pooled with a session filter's where that has been scoring better.

At a 10 s clock much of what a context window cannot tell the network is which sessions
run and how long they have run (``research/forecast/experiments.md``, "Where the 10 s gap
is"). For one series this module:

1. runs a :class:`~research.forecast.sessions.SessionParticleFilter` over the whole past under a
   law fitted from it (:func:`~research.forecast.session_fit.fit_session_law`, refitted
   hourly or daily), forecasting at every origin (:func:`session_paths`);
2. pools half the model's sample paths with as many of the filter's (:func:`pool_paths`);
3. at each origin uses the pool where its CRPS over the last ``window`` origins whose
   targets have been seen is below the model's alone, else the model
   (:func:`choose_online`; at least :data:`MIN_SCORED` such origins first).

Only loads before an origin shape its forecast. Series where no sessions law fits, or
where the pool has not been ahead, keep the model's forecast unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from research.forecast.session_fit import FittedLaw, fit_session_law
from research.forecast.sessions import SessionParticleFilter
from sliceai.forecast.metrics import crps_ensemble
from sliceai.traffic.generators import Clock

Array = np.ndarray
IntArray = npt.NDArray[np.int64]
#: Origins whose targets have been seen before the pool can be chosen.
MIN_SCORED = 5


@dataclass(frozen=True)
class SessionOptions:
    """``particles`` per filter; ``window``: scored origins the choice reads; ``seed``
    of the filter's draws."""

    particles: int = 1000
    window: int = 90
    seed: int = 0

    def __post_init__(self) -> None:
        if self.particles < 2 or self.window < MIN_SCORED:
            raise ValueError(
                f"particles must be at least 2 and window at least {MIN_SCORED}, got "
                f"{self.particles} and {self.window}"
            )


def session_paths(
    values: Array,
    clock: Clock,
    origins: IntArray,
    horizon: int,
    n_paths: int,
    options: SessionOptions,
) -> tuple[Array, npt.NDArray[np.bool_]]:
    """The filter's forecasts ``(len(origins), horizon, n_paths)`` bit/s at increasing
    ``origins`` of ``values`` (NaN where missing), and which origins have one (a law had
    been fitted by then; the others hold zeros). ``clock`` spans ``values`` and the last
    origin's horizon."""
    out = np.zeros((len(origins), horizon, n_paths))
    have = np.zeros(len(origins), dtype=bool)
    if len(origins) == 0:
        return out, have
    first, last = int(origins[0]), int(origins[-1])
    at = {int(o): i for i, o in enumerate(origins)}
    rng = np.random.default_rng(options.seed)
    fitted = fit_session_law(values, clock, first)
    filt = None if fitted is None else SessionParticleFilter(fitted.law, options.particles, rng)

    def refit_after(f: FittedLaw | None) -> int:
        return max(1, round((f.refit_s if f is not None else 3600.0) / clock.dt))

    next_fit = first + refit_after(fitted)
    for t in range(first if filt is None else 0, last + 1):
        if t >= next_fit and t > first:
            fitted = fit_session_law(values, clock, t) or fitted
            if fitted is not None and filt is None:  # the first law: run the past through
                filt = SessionParticleFilter(fitted.law, options.particles, rng)
                for s in range(t):
                    filt.update(s, float(values[s]))
            elif fitted is not None and filt is not None:
                filt.law = fitted.law
            next_fit = t + refit_after(fitted)
        if filt is None:
            continue
        if t in at:
            out[at[t]] = filt.forecast(t, horizon, n_paths)
            have[at[t]] = True
        if t < last:
            filt.update(t, float(values[t]))
    return out, have


def pool_paths(model: Array, filtered: Array, have: npt.NDArray[np.bool_]) -> Array:
    """``(n, horizon, M)``: the filter's first ``M // 2`` paths and the model's first
    ``M - M // 2`` at origins that ``have`` a filter forecast, the model's elsewhere."""
    half = model.shape[-1] // 2
    pool = np.concatenate([filtered[..., :half], model[..., : model.shape[-1] - half]], axis=-1)
    out: Array = np.where(have[:, None, None], pool, model)
    return out


def choose_online(
    pool_crps: Array,
    model_crps: Array,
    origins: IntArray,
    horizon: int,
    window: int,
    pooled: npt.NDArray[np.bool_] | None = None,
) -> npt.NDArray[np.bool_]:
    """Per origin: whether the pool's summed CRPS over the last ``window`` origins whose
    targets ended by then is below the model's, once at least :data:`MIN_SCORED` of them
    were ``pooled`` (had a filter forecast: elsewhere the pool is the model; default all)."""
    seen = np.searchsorted(origins + horizon, origins, side="right")  # targets ended by o
    cp = np.concatenate([[0.0], np.cumsum(pool_crps)])
    cm = np.concatenate([[0.0], np.cumsum(model_crps)])
    cn = np.concatenate([[0], np.cumsum(np.ones(len(origins)) if pooled is None else pooled)])
    lo = np.maximum(seen - window, 0)
    out: npt.NDArray[np.bool_] = (cn[seen] - cn[lo] >= MIN_SCORED) & (
        cp[seen] - cp[lo] < cm[seen] - cm[lo]
    )
    return out


def with_sessions(
    model: Array,
    values: Array,
    origins: IntArray,
    horizon: int,
    start_time: float,
    interval_s: float,
    options: SessionOptions,
) -> tuple[Array, npt.NDArray[np.bool_]]:
    """The assisted forecast of one series: ``model`` paths ``(n, horizon, M)`` at
    ``origins``, with the pool in their place where :func:`choose_online` picks it; and
    which origins it picked. ``values`` is the whole series (targets included: the
    choice reads only those already ended at each origin)."""
    clock = Clock(start_time, interval_s, len(values) + horizon)
    filtered, have = session_paths(values, clock, origins, horizon, model.shape[-1] // 2, options)
    if not have.any():
        return model, have
    targets = np.lib.stride_tricks.sliding_window_view(values, horizon)[origins]
    pool = pool_paths(model, filtered, have)
    use = choose_online(
        np.nan_to_num(crps_ensemble(pool, targets).mean(axis=1)),
        np.nan_to_num(crps_ensemble(model, targets).mean(axis=1)),
        origins,
        horizon,
        options.window,
        have,
    )
    out: Array = np.where(use[:, None, None], pool, model)
    return out, use
