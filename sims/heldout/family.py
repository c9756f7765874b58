"""A held-out family of traffic generators: for evaluation only, never for training.

:func:`generate_heldout_trace` turns a policy and a seed into a :class:`Trace`
of offered load for every slice. Each slice gets a :class:`SliceRecipe` drawn
from the seed and the slice's *character* as the policy states it (guaranteed
against maximum rate, resource type, latency budget, SST, accepted risk; never
its name): a primary traffic model (heavy-tailed ON/OFF sessions, a
Markov-modulated rate or constant-bit-rate telemetry with alarm bursts), for
some slices a secondary ON/OFF background, a diurnal profile with its own
phase, an uplink/downlink ratio, a level and optional missing intervals.

Levels are set once per slice and seed on a fixed calibration realisation (two
weekdays at 10 s, from streams of their own), so they depend on neither the
trace's length, start nor interval: the dominant direction's 75th percentile of
active intervals is drawn between a fraction of the guarantee and the maximum,
then lowered if more than ``over_max_cap`` of the calibration intervals would
exceed the maximum. The actual trace can therefore exceed the maximum in a
small share of intervals, as real traffic does.

See ``sims/heldout/README.md`` for the models, their parameters and references.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sims.heldout.models import FAMILIES
from sims.heldout.recipes import SliceRecipe, draw_recipe, stream
from sims.heldout.timeline import (
    REFERENCE_INTERVAL_S,
    SECONDS_PER_DAY,
    DiurnalClock,
    FloatArray,
)
from sliceai.policy import Policy, load_policy
from sliceai.traffic.trace import MAX_INTERVAL_S, MIN_INTERVAL_S, Trace

DEFAULT_START_EPOCH_S = 1_736_121_600.0
"""2025-01-06 00:00 UTC, a Monday."""
CALIBRATION_INTERVAL_S = REFERENCE_INTERVAL_S
CALIBRATION_INTERVALS = int(2 * SECONDS_PER_DAY / CALIBRATION_INTERVAL_S)


class HeldoutError(ValueError):
    """A bad argument to the held-out generator; ``str`` says which and why."""


@dataclass(frozen=True)
class RegimeStep:
    """Multiply every slice's load by ``factor`` from ``at_fraction`` of the trace on."""

    factor: float
    at_fraction: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.factor) and self.factor > 0):
            raise HeldoutError(f"step factor must be a positive number, got {self.factor!r}")
        if not 0.0 <= self.at_fraction <= 1.0:
            raise HeldoutError(f"step position must be in [0, 1], got {self.at_fraction!r}")

    @classmethod
    def parse(cls, text: str) -> RegimeStep:
        """``"1.4@0.5"``: factor 1.4 from half the trace on."""
        factor, sep, at = text.partition("@")
        try:
            return cls(float(factor), float(at) if sep else 0.5)
        except ValueError as exc:
            if isinstance(exc, HeldoutError):
                raise
            raise HeldoutError(
                f"cannot read step {text!r}; write FACTOR@FRACTION, e.g. 1.4@0.5"
            ) from None

    def first_interval(self, n_intervals: int) -> int:
        return min(n_intervals, math.floor(self.at_fraction * n_intervals))


@dataclass(frozen=True)
class SliceLevels:
    """How a recipe's unit-scale load becomes bit/s (from the calibration realisation)."""

    secondary_weight: float
    scale: tuple[float, float]


def _unit_components(
    recipe: SliceRecipe,
    seed: int,
    n_intervals: int,
    interval_s: float,
    start: float,
    prefix: str,
) -> tuple[FloatArray, FloatArray | None]:
    def rng(purpose: str) -> np.random.Generator:
        return stream(seed, recipe.key, prefix + purpose)

    horizon = n_intervals * interval_s
    clock = DiurnalClock(recipe.diurnal, start, horizon, rng("clock"))
    primary = recipe.primary.render(
        n_intervals,
        interval_s,
        clock,
        rng("primary-events"),
        rng("primary-noise"),
        recipe.ul_ratio,
    )
    if recipe.secondary is None:
        return primary, None
    secondary = recipe.secondary.render(
        n_intervals,
        interval_s,
        clock,
        rng("secondary-events"),
        rng("secondary-noise"),
        recipe.ul_ratio,
    )
    return primary, secondary


def calibrate(recipe: SliceRecipe, seed: int) -> SliceLevels:
    """Levels from two weekdays at 10 s drawn from the calibration streams."""
    primary, secondary = _unit_components(
        recipe,
        seed,
        CALIBRATION_INTERVALS,
        CALIBRATION_INTERVAL_S,
        DEFAULT_START_EPOCH_S,
        "calibration-",
    )
    d = recipe.dominant_direction
    weight = 0.0
    combined = primary
    if secondary is not None and secondary[:, d].mean() > 0:
        share = recipe.secondary_share
        weight = share / (1.0 - share) * primary[:, d].mean() / secondary[:, d].mean()
        combined = primary + weight * secondary
    active = combined[:, d][combined[:, d] > 0]
    typical_unit = float(np.quantile(active, 0.75)) if active.size else 1.0
    scale = recipe.typical_bps / typical_unit
    scales = []
    for direction in range(2):
        limit = recipe.maximum_bps[direction]
        high = float(np.quantile(combined[:, direction], 1.0 - recipe.over_max_cap)) * scale
        scales.append(scale * min(1.0, limit / high) if high > 0 else scale)
    return SliceLevels(weight, (scales[0], scales[1]))


def soft_ceiling(load: FloatArray, knee: float, ceiling: float) -> FloatArray:
    """Identity up to ``knee``, then bent smoothly (tanh) towards ``ceiling``, never above.

    Offered load can exceed a slice's maximum, but not by any factor: the radio
    access and the senders' congestion control bound it. No-op when ``knee`` is inf.
    """
    if not math.isfinite(knee) or ceiling <= knee:
        return load
    room = ceiling - knee
    bent = knee + room * np.tanh((load - knee) / room)
    return np.where(load > knee, bent, load)


def _missing_mask(
    rng: np.random.Generator, rate: float, n_intervals: int, interval_s: float
) -> npt.NDArray[np.bool_]:
    """Intervals lost in gaps of a log-normal duration (median 20 s, at least one interval)."""
    mask = np.zeros(n_intervals, dtype=bool)
    if rate <= 0:
        return mask
    mean_run = max(1.0, 20.0 * math.exp(0.5) / interval_s)
    n_gaps = rng.poisson(rate * n_intervals / mean_run)
    first = rng.integers(0, n_intervals, n_gaps)
    length = np.maximum(1, np.round(20.0 * np.exp(rng.standard_normal(n_gaps)) / interval_s))
    for f, length_k in zip(first.tolist(), length.astype(np.int64).tolist(), strict=True):
        mask[f : f + length_k] = True
    return mask


def render_slice(
    recipe: SliceRecipe, seed: int, n_intervals: int, interval_s: float, start: float
) -> FloatArray:
    """Offered load of one slice in bit/s, shape ``(n_intervals, 2)``; NaN where missing."""
    levels = calibrate(recipe, seed)
    primary, secondary = _unit_components(recipe, seed, n_intervals, interval_s, start, "")
    combined = primary if secondary is None else primary + levels.secondary_weight * secondary
    load: FloatArray = combined * np.asarray(levels.scale)
    for direction in range(2):
        load[:, direction] = soft_ceiling(
            load[:, direction], recipe.knee_bps[direction], recipe.ceiling_bps[direction]
        )
    missing = _missing_mask(
        stream(seed, recipe.key, "missing"), recipe.missing_rate, n_intervals, interval_s
    )
    load[missing] = np.nan
    return load


def _check_arguments(
    seed: int, n_intervals: int, interval_s: float, start: float, family: str | None
) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise HeldoutError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(n_intervals, bool) or not isinstance(n_intervals, int | np.integer):
        raise HeldoutError(f"number of intervals must be an integer, got {n_intervals!r}")
    if n_intervals < 1:
        raise HeldoutError(f"number of intervals must be at least 1, got {n_intervals}")
    if not (isinstance(interval_s, int | float) and math.isfinite(interval_s)) or interval_s <= 0:
        raise HeldoutError(f"interval must be a positive number of seconds, got {interval_s!r}")
    if not MIN_INTERVAL_S <= interval_s <= MAX_INTERVAL_S:
        raise HeldoutError(
            f"interval {interval_s:g} s outside {MIN_INTERVAL_S:g} s .. {MAX_INTERVAL_S:g} s"
        )
    if not math.isfinite(start):
        raise HeldoutError(f"start must be a finite epoch time in seconds, got {start!r}")
    if family is not None and family not in FAMILIES:
        raise HeldoutError(f"unknown family {family!r}; use one of {', '.join(FAMILIES)}")


def heldout_recipes(
    policy: Policy | str | Path,
    seed: int,
    *,
    family: str | None = None,
    missing_rate: float | None = None,
    weekly: bool = True,
) -> tuple[SliceRecipe, ...]:
    """The recipe of every slice of ``policy`` (a :class:`Policy` or a YAML path), in order."""
    if family is not None and family not in FAMILIES:
        raise HeldoutError(f"unknown family {family!r}; use one of {', '.join(FAMILIES)}")
    loaded = policy if isinstance(policy, Policy) else load_policy(policy)
    if missing_rate is not None and not 0.0 <= missing_rate <= 0.5:
        raise HeldoutError(f"missing rate must be in [0, 0.5], got {missing_rate!r}")
    return tuple(
        draw_recipe(loaded, s, seed, family=family, missing_rate=missing_rate, weekly=weekly)
        for s in loaded.slices
    )


def generate_heldout_trace(
    policy: Policy | str | Path,
    *,
    seed: int,
    n_intervals: int,
    interval_s: float,
    start: float = DEFAULT_START_EPOCH_S,
    step: RegimeStep | tuple[float, float] | None = None,
    missing_rate: float | None = None,
    weekly: bool = True,
    family: str | None = None,
) -> Trace:
    """A held-out trace of every slice of ``policy``.

    ``step=(factor, at_fraction)`` multiplies all load from interval
    ``floor(at_fraction * n_intervals)`` on (exactly: the same seed without the
    step gives the same values before it and ``1/factor`` of them after).
    ``missing_rate`` None draws each slice's share of missing intervals from the
    seed (half the slices have none), 0 disables them. ``weekly`` False removes the
    weekday/weekend difference. ``family`` forces one model on every slice.
    Raises :class:`HeldoutError` for bad arguments and
    :class:`sliceai.policy.PolicyError` for a policy that cannot be loaded.
    """
    _check_arguments(seed, n_intervals, interval_s, start, family)
    regime = RegimeStep(*step) if isinstance(step, tuple) else step
    recipes = heldout_recipes(policy, seed, family=family, missing_rate=missing_rate, weekly=weekly)
    n, interval = int(n_intervals), float(interval_s)
    load = np.empty((n, len(recipes), 2))
    for i, recipe in enumerate(recipes):
        load[:, i, :] = render_slice(recipe, int(seed), n, interval, float(start))
    if regime is not None:
        load[regime.first_interval(n) :] *= regime.factor
    return Trace(float(start), interval, tuple(r.name for r in recipes), load)
