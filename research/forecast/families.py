"""Generic traffic families laid over the randomised scenario variants.

:mod:`research.forecast.randomized` perturbs the bundled scenarios' own settings (rates,
session laws, noise, and the diurnal phase: day profiles and schedules rotated by whole
hours, weeks by whole days). The bundled generators still only know four component
kinds, so a model trained on them has never seen some shapes that any operator's traffic
shows. :func:`widen` lays four generic families over a generated trace, each written from
the textbook process it is named after and none fitted to an evaluation trace:

``on-off``
    Heavy-tailed ON/OFF sources (Willinger et al. 1997: their superposition is
    self-similar). 1-8 sources per slice, each alternating Pareto ON and OFF periods
    (shape 1.1-1.9, so infinite variance; scale 20 s-10 min ON, 20 s-30 min OFF), sending
    at a constant rate while ON; the sources' rates add up to 0.3-3 times the slice's
    mean load. Added to the slice's load.
``markov-bursts``
    A continuous-time Markov chain with a base state and one or two burst states
    (exponential sojourns: base mean 15 min-6 h, bursts 30 s-20 min). In a burst the
    slice's load is multiplied by 1.5-5 and gains 0-1 times its mean load (so bursts
    show where the slice was idle too).
``level-steps``
    Level and regime changes: at Poisson times (0.5-4 a day, at least one per trace)
    the slice's load is multiplied by a log-uniform factor in [0.6, 1.6], the level kept
    within [1/4, 4] of the original. With probability :data:`TRACE_WIDE_STEPS` a trace
    also gets one such process shared by all its slices (a site that grows or shrinks).
``full-buffer``
    Flows that saturate their allocation: stretches of 10 min-6 h (gaps exponential,
    mean 2-48 h) in which one direction (the busier one three times in four) is pinned
    just under a ceiling (``ceiling * exp(-|N(0, s)|)``, ``s`` 0.002-0.03) while the
    other carries 0.5-5 % of it as acknowledgements on top of its own load. The ceiling
    is 0.8-2.5 times the direction's 99th percentile, within the slice's cap, each
    stretch's own within a factor 1.25 of it.

Each family lands on each slice with probability :data:`SLICE_SHARE`, and on at least
one slice of every trace. Every event is drawn in continuous time (seconds from the
trace's start) and averaged over each interval, so a seed gives the same events at any
clock; a slice's families apply in the order above (steps and bursts scale the load the
ON/OFF sources then add to, and a full-buffer stretch pins whatever is there). Loads
stay finite and non-negative and are not clipped to the slice's cap afterwards (offered
load may exceed what a slice is given). The same ``(trace, seed)`` always gives the same
result, and a slice's draws do not depend on which families other slices got.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sliceai.traffic import Trace

Array = npt.NDArray[np.float64]

FAMILIES = ("on-off", "markov-bursts", "level-steps", "full-buffer")
#: Probability that a family lands on a given slice (each family at least on one slice).
SLICE_SHARE = 0.35
#: Probability that a trace also gets one step process shared by all its slices.
TRACE_WIDE_STEPS = 0.3
#: Salt of the families' random streams (the variant's settings use another).
SALT = 104_729

# on-off
ON_OFF_SOURCES = (1, 8)
ON_OFF_SHAPE = (1.1, 1.9)
ON_SCALE_S = (20.0, 600.0)
OFF_SCALE_S = (20.0, 1800.0)
ON_OFF_PEAK = (0.3, 3.0)
# markov-bursts
BURST_STATES = (1, 2)
BASE_SOJOURN_S = (900.0, 21_600.0)
BURST_SOJOURN_S = (30.0, 1200.0)
BURST_FACTOR = (1.5, 5.0)
BURST_ADD = (0.0, 1.0)
# level-steps
STEPS_PER_DAY = (0.5, 4.0)
STEP_FACTOR = (0.6, 1.6)
LEVEL_BOUNDS = (0.25, 4.0)
# full-buffer
STRETCH_S = (600.0, 21_600.0)
STRETCH_GAP_S = (7200.0, 172_800.0)
CEILING_OVER_Q99 = (0.8, 2.5)
STRETCH_CEILING_SPREAD = 1.25
PIN_SIGMA = (0.002, 0.03)
ACK_SHARE = (0.005, 0.05)
BUSIER_DIRECTION = 0.75

#: A load this small (bit/s) stands in for a slice's mean when it has none.
FLOOR_BPS = 1e3


@dataclass(frozen=True)
class Applied:
    """One family laid over one slice (``slice`` ``"*"``: all of them), with the
    parameters it drew."""

    family: str
    slice: str
    params: tuple[tuple[str, float], ...]


def widen(
    trace: Trace, seed: int, caps: Sequence[float | None] | None = None
) -> tuple[Trace, tuple[Applied, ...]]:
    """``trace`` with the families laid over its slices (``caps``: each slice's cap, which
    bounds the full-buffer ceilings; None: none), and what was applied."""
    n, n_slices = trace.n_intervals, len(trace.slices)
    caps = list(caps) if caps is not None else [None] * n_slices
    if len(caps) != n_slices:
        raise ValueError(f"{len(caps)} caps for {n_slices} slices")
    edges = trace.interval_s * np.arange(n + 1, dtype=np.float64)
    load = np.array(trace.load_bps, dtype=np.float64)
    plan = np.random.default_rng([seed, SALT])
    chosen = plan.random((n_slices, len(FAMILIES))) < SLICE_SHARE
    for f in range(len(FAMILIES)):
        if not chosen[:, f].any():
            chosen[int(plan.integers(n_slices)), f] = True
    applied: list[Applied] = []
    if plan.random() < TRACE_WIDE_STEPS:
        factor, params = _level_steps(edges, _rng(seed, -1, 2))
        load *= factor[:, None, None]
        applied.append(Applied("level-steps", "*", params))
    for i, name in enumerate(trace.slices):
        for f, family in enumerate(FAMILIES):
            if chosen[i, f]:
                rng = _rng(seed, i, f)
                load[:, i], params = APPLY[family](load[:, i], edges, rng, caps[i])
                applied.append(Applied(family, name, params))
    widened = Trace(trace.start, trace.interval_s, trace.slices, load, trace.extras)
    return widened, tuple(applied)


def _rng(seed: int, slice_index: int, family: int) -> np.random.Generator:
    return np.random.default_rng([seed, SALT, slice_index + 1, family])


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))


def _mean_level(load: Array) -> float:
    """The slice's mean load over both directions (bit/s)."""
    return max(float(load.sum(axis=1).mean()), FLOOR_BPS)


def _dl_share(load: Array) -> float:
    total = float(load.sum())
    return 0.5 if total <= 0 else float(load[:, 0].sum()) / total


def piecewise_mean(times: Array, values: Array, edges: Array) -> Array:
    """The mean over each interval ``[edges[k], edges[k + 1])`` of the piecewise-constant
    function that is ``values[j]`` from ``times[j]`` to ``times[j + 1]`` (the last value
    holds on; ``times[0]`` must be at or before ``edges[0]``)."""
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    widths = np.diff(times)
    integral = np.concatenate(([0.0], np.cumsum(values[:-1] * widths)))
    j = np.clip(np.searchsorted(times, edges, side="right") - 1, 0, len(times) - 1)
    at_edges = integral[j] + values[j] * (edges - times[j])
    inside = j[:-1] == j[1:]  # within one piece: its value exactly, no rounding
    return np.where(inside, values[j[:-1]], np.diff(at_edges) / np.diff(edges))


def _alternating(
    rng: np.random.Generator,
    on: tuple[float, float],
    off: tuple[float, float],
    end: float,
    start_on: bool,
) -> tuple[Array, Array]:
    """Switching times from 0 past ``end`` of a source alternating between Pareto ON and
    OFF periods (``on``, ``off``: their shape and scale), and the state (1 on, 0 off) from
    each time on."""
    first, second = (on, off) if start_on else (off, on)
    durations: list[Array] = []
    total = 0.0
    while total < end:
        pairs = np.stack([_pareto(rng, *first, 256), _pareto(rng, *second, 256)], axis=1)
        durations.append(pairs.ravel())
        total += float(pairs.sum())
    times = np.concatenate(([0.0], np.cumsum(np.concatenate(durations))))
    stop = int(np.searchsorted(times, end, side="left")) + 1  # keep the first time past end
    times = times[:stop]
    states = (np.arange(len(times)) % 2 == 0) == start_on
    return times, states.astype(np.float64)


def _pareto(rng: np.random.Generator, shape: float, scale: float, k: int) -> Array:
    return scale * (1.0 + rng.pareto(shape, k))


def _on_off(
    load: Array, edges: Array, rng: np.random.Generator, cap: float | None
) -> tuple[Array, tuple[tuple[str, float], ...]]:
    """Heavy-tailed ON/OFF sources added to the slice."""
    del cap
    sources = int(rng.integers(ON_OFF_SOURCES[0], ON_OFF_SOURCES[1] + 1))
    peak = _log_uniform(rng, ON_OFF_PEAK) * _mean_level(load)
    rates = peak * rng.dirichlet(np.ones(sources))
    share = _dl_share(load)
    added = np.zeros(len(edges) - 1)
    shapes = []
    for rate in rates:
        a_on, a_off = rng.uniform(*ON_OFF_SHAPE, size=2)
        x_on, x_off = _log_uniform(rng, ON_SCALE_S), _log_uniform(rng, OFF_SCALE_S)
        shapes += [a_on, a_off]
        start_on = bool(rng.random() < 0.5)
        times, states = _alternating(rng, (a_on, x_on), (a_off, x_off), edges[-1], start_on)
        added += rate * piecewise_mean(times, states, edges)
    out = load + added[:, None] * np.array([share, 1.0 - share])
    params = (("sources", float(sources)), ("peak_bps", peak), ("min_shape", float(min(shapes))))
    return out, params


def _markov_bursts(
    load: Array, edges: Array, rng: np.random.Generator, cap: float | None
) -> tuple[Array, tuple[tuple[str, float], ...]]:
    """A Markov chain (base, one or two burst states) scaling the slice and adding to it."""
    del cap
    states = int(rng.integers(BURST_STATES[0], BURST_STATES[1] + 1))
    base_mean = _log_uniform(rng, BASE_SOJOURN_S)
    burst_means = np.array([_log_uniform(rng, BURST_SOJOURN_S) for _ in range(states)])
    factors = np.concatenate(([1.0], [_log_uniform(rng, BURST_FACTOR) for _ in range(states)]))
    adds = np.concatenate(([0.0], rng.uniform(*BURST_ADD, size=states))) * _mean_level(load)
    times, visited = [0.0], [0]
    t, state = 0.0, 0
    while t < edges[-1]:
        t += float(rng.exponential(base_mean if state == 0 else burst_means[state - 1]))
        state = int(rng.integers(1, states + 1)) if state == 0 else 0
        times.append(t)
        visited.append(state)
    at = np.asarray(visited)
    factor = piecewise_mean(np.asarray(times), factors[at], edges)
    add = piecewise_mean(np.asarray(times), adds[at], edges)
    share = _dl_share(load)
    out = load * factor[:, None] + add[:, None] * np.array([share, 1.0 - share])
    params = (
        ("burst_states", float(states)),
        ("base_mean_s", base_mean),
        ("max_factor", float(factors.max())),
        ("bursts", float(np.count_nonzero(at))),
    )
    return out, params


def _level_steps(
    edges: Array, rng: np.random.Generator
) -> tuple[Array, tuple[tuple[str, float], ...]]:
    """The level factor per interval of a step process, and its parameters."""
    per_day = _log_uniform(rng, STEPS_PER_DAY)
    end = float(edges[-1])
    count = max(1, int(rng.poisson(per_day * end / 86_400.0)))
    times = np.sort(rng.uniform(0.0, end, size=count))
    steps = np.exp(rng.uniform(np.log(STEP_FACTOR[0]), np.log(STEP_FACTOR[1]), size=count))
    low, high = np.log(LEVEL_BOUNDS[0]), np.log(LEVEL_BOUNDS[1])
    levels = [0.0]
    for s in np.log(steps):
        levels.append(float(np.clip(levels[-1] + s, low, high)))
    factor = piecewise_mean(np.concatenate(([0.0], times)), np.exp(levels), edges)
    params = (
        ("per_day", per_day),
        ("steps", float(count)),
        ("last_level", float(np.exp(levels[-1]))),
    )
    return factor, params


def _steps(
    load: Array, edges: Array, rng: np.random.Generator, cap: float | None
) -> tuple[Array, tuple[tuple[str, float], ...]]:
    del cap
    factor, params = _level_steps(edges, rng)
    return load * factor[:, None], params


def _full_buffer(
    load: Array, edges: Array, rng: np.random.Generator, cap: float | None
) -> tuple[Array, tuple[tuple[str, float], ...]]:
    """Stretches with one direction pinned just under a ceiling."""
    means = load.mean(axis=0)
    busier = int(np.argmax(means))
    pinned = busier if rng.random() < BUSIER_DIRECTION else 1 - busier
    other = 1 - pinned
    q99 = float(np.quantile(load[:, pinned], 0.99))
    base = q99 if q99 > 0 else float(load[:, pinned].max())
    ceiling = max(base, FLOOR_BPS) * _log_uniform(rng, CEILING_OVER_Q99)
    if cap is not None:
        ceiling = min(ceiling, cap)
    gap_mean = _log_uniform(rng, STRETCH_GAP_S)
    sigma = _log_uniform(rng, PIN_SIGMA)
    ack = float(rng.uniform(*ACK_SHARE))
    times, levels = [0.0], [0.0]
    t = float(rng.exponential(gap_mean))
    while t < edges[-1]:
        level = ceiling * _log_uniform(rng, (1 / STRETCH_CEILING_SPREAD, STRETCH_CEILING_SPREAD))
        if cap is not None:
            level = min(level, cap)
        times += [t, t + _log_uniform(rng, STRETCH_S)]
        levels += [level, 0.0]
        t = times[-1] + float(rng.exponential(gap_mean))
    stretches = (len(times) - 1) // 2
    if stretches == 0:  # at least one stretch per trace
        start = float(rng.uniform(0.0, edges[-1]))
        times, levels = [0.0, start, start + _log_uniform(rng, STRETCH_S)], [0.0, ceiling, 0.0]
        stretches = 1
    t_arr, l_arr = np.asarray(times), np.asarray(levels)
    covered = piecewise_mean(t_arr, (l_arr > 0).astype(np.float64), edges)
    pinned_load = piecewise_mean(t_arr, l_arr, edges)
    pinned_load *= np.exp(-np.abs(rng.normal(0.0, sigma, size=len(pinned_load))))
    out = load.copy()
    out[:, pinned] = pinned_load + (1.0 - covered) * load[:, pinned]
    out[:, other] = load[:, other] + ack * pinned_load
    params = (
        ("direction", float(pinned)),
        ("ceiling_bps", ceiling),
        ("stretches", float(stretches)),
        ("sigma", sigma),
        ("pinned_share", float(covered.mean())),
    )
    return out, params


#: Each family's transformation of one slice's ``(n, 2)`` load, given the interval edges
#: (seconds from the start), its random stream and the slice's cap: the new load and the
#: parameters drawn.
APPLY: dict[
    str,
    Callable[
        [Array, Array, np.random.Generator, float | None],
        tuple[Array, tuple[tuple[str, float], ...]],
    ],
] = {
    "on-off": _on_off,
    "markov-bursts": _markov_bursts,
    "level-steps": _steps,
    "full-buffer": _full_buffer,
}
