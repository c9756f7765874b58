"""Randomised variants of the bundled scenarios, to train a model that generalises.

Three scenarios teach a global model three sets of rates, schedules and noise. A user's
slices (or the held-out ``stadium`` mix) have others: sessions at other hours and
rates, other burst lengths. :func:`randomized_scenario` draws a variant of a scenario
with every slice's settings perturbed, seeded, so ``make model`` rebuilds the same
training data:

- each slice's rates (and cap) times one log-uniform factor in [1/4, 4];
- session arrivals per hour times log-uniform [1/3, 3], durations times [1/3, 3];
- noise and drift sigma times uniform [0.6, 1.5], correlation times log-uniform [1/3, 3];
- the day profile and schedule windows rotated by a whole number of hours (0-23),
  the week profile and schedule days by 0-6 days.

Components that share a random ``stream`` (the haptics and video of one surgery) get
the same timing factors and shifts, so they still start and stop together.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import numpy as np

from sliceai.traffic.generators import resolve_slices
from sliceai.traffic.scenario_model import (
    WEEKDAYS,
    Cyclic,
    Level,
    LogNormalSetting,
    Noise,
    Periodic,
    Scenario,
    Sessions,
    SliceSettings,
    Spikes,
    When,
)

#: Ranges of the perturbations (log-uniform factors are drawn as ``exp(U(-r, r))``).
RATE_LOG_RANGE = math.log(4.0)
ARRIVAL_LOG_RANGE = math.log(3.0)
DURATION_LOG_RANGE = math.log(3.0)
CORR_LOG_RANGE = math.log(3.0)
SIGMA_FACTOR = (0.6, 1.5)
#: The generator's bound on a noise sigma.
MAX_SIGMA = 3.0

#: A lognormal setting (a session rate or duration) scaled by :func:`_scaled`.
T = TypeVar("T", bound=LogNormalSetting)


def randomized_scenario(base: Scenario, seed: int) -> Scenario:
    """A variant of ``base`` (its includes resolved) with perturbed slice settings; the
    same ``(base, seed)`` always gives the same variant."""
    rng = np.random.default_rng([seed, 7919])  # salted: the traffic draws from [seed, ...]
    timing: dict[str, _Timing] = {}
    slices = tuple(_slice(s, rng, timing) for s in resolve_slices(base))
    return Scenario(
        name=f"{base.name}-variant-{seed}",
        description=f"randomised variant {seed} of {base.name}",
        utc_offset_h=base.utc_offset_h,
        slices=slices,
    )


class _Timing:
    """Timing perturbations shared by the components of one random stream."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.arrivals = _log_uniform(rng, ARRIVAL_LOG_RANGE)
        self.duration = _log_uniform(rng, DURATION_LOG_RANGE)
        self.hours = int(rng.integers(0, 24))
        self.days = int(rng.integers(0, 7))


def _log_uniform(rng: np.random.Generator, log_range: float) -> float:
    return float(math.exp(rng.uniform(-log_range, log_range)))


def _slice(
    settings: SliceSettings, rng: np.random.Generator, timing: dict[str, _Timing]
) -> SliceSettings:
    rate = _log_uniform(rng, RATE_LOG_RANGE)
    components = []
    for k, comp in enumerate(settings.components):
        key = f"stream:{comp.stream}" if comp.stream else f"{settings.name}:{k}"
        if key not in timing:
            timing[key] = _Timing(rng)
        components.append(_component(comp, rate, timing[key], rng))
    cap = None if settings.cap is None else settings.cap * rate
    return settings.model_copy(update={"components": tuple(components), "cap": cap})


def _component(comp: Any, rate: float, timing: _Timing, rng: np.random.Generator) -> Any:
    update: dict[str, Any] = {
        "noise": _noise(comp.noise, rng),
        "drift": _noise(comp.drift, rng),
        "spikes": _spikes(comp.spikes, rate),
        "day": _rotate(comp.day, timing.hours),
        "week": _rotate(comp.week, timing.days),
        "when": _when(comp.when, timing),
    }
    if isinstance(comp, Level):
        update["rate"] = comp.rate * rate
    elif isinstance(comp, Sessions):
        update["per_hour"] = comp.per_hour * timing.arrivals
        update["duration"] = _scaled(comp.duration, timing.duration)
        update["rate"] = _scaled(comp.rate, rate)
    elif isinstance(comp, Periodic):
        update["devices"] = max(1, round(comp.devices * rate))
    elif isinstance(comp, Cyclic):
        update.update(low=comp.low * rate, high=comp.high * rate, idle=comp.idle * rate)
    return comp.model_copy(update=update)


def _scaled(dist: T, factor: float) -> T:
    high = None if dist.max is None else dist.max * factor
    return dist.model_copy(update={"median": dist.median * factor, "max": high})


def _noise(noise: Noise | None, rng: np.random.Generator) -> Noise | None:
    if noise is None:
        return None
    sigma = min(MAX_SIGMA, noise.sigma * rng.uniform(*SIGMA_FACTOR))
    corr = noise.corr * _log_uniform(rng, CORR_LOG_RANGE)
    return noise.model_copy(update={"sigma": sigma, "corr": corr})


def _spikes(spikes: Spikes | None, rate: float) -> Spikes | None:
    if spikes is None:
        return None
    high = None if spikes.max is None else spikes.max * rate
    return spikes.model_copy(update={"scale": spikes.scale * rate, "max": high})


def _rotate(profile: tuple[float, ...] | None, shift: int) -> tuple[float, ...] | None:
    """``profile`` moved ``shift`` places later (hour ``h``'s factor now applies at
    ``h + shift``)."""
    if profile is None:
        return None
    return tuple(np.roll(np.asarray(profile), shift).tolist())


def _when(when: When | None, timing: _Timing) -> When | None:
    if when is None:
        return None
    hours = []
    for start, end in when.hours:
        moved = (start + timing.hours) % 24.0
        hours.append((moved, moved + (end - start)))
    days = [WEEKDAYS[(WEEKDAYS.index(d) + timing.days) % 7] for d in when.days]
    return when.model_copy(update={"days": tuple(days), "hours": tuple(hours)})
