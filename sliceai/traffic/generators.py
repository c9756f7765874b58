"""Seeded, vectorised synthetic traffic for the bundled scenarios.

:func:`generate` turns a :class:`~sliceai.traffic.scenario_model.Scenario`
into a :class:`~sliceai.traffic.trace.Trace`: every slice is the sum of its
components, each computed for the whole time axis at once with numpy (no
per-interval Python loop), so cost grows with ``n_intervals`` only through
array operations. Each (slice, component) draws from its own random stream
derived from ``(seed, slice name, component index)``: the same seed gives the
same trace, and a slice keeps its traffic when other slices are added.

Memory: the whole trace is built in memory, ``n_intervals * n_slices * 16``
bytes plus a few ``(n_intervals, 2)`` work arrays.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml
from pydantic import ValidationError

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
from sliceai.traffic.trace import Trace, TraceError

Array = npt.NDArray[np.float64]
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "data" / "scenarios"


class ScenarioError(TraceError):
    """A scenario that cannot be loaded or generated; the message names the file and field."""


def bundled_scenarios() -> tuple[str, ...]:
    """Names of the scenarios shipped with the package."""
    return tuple(sorted(p.stem for p in BUNDLED_DIR.glob("*.yaml")))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A bundled scenario by name (``"hospital"``) or a scenario YAML file by path."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = BUNDLED_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise ScenarioError(
                f"no scenario {str(name_or_path)!r}; bundled: {', '.join(bundled_scenarios())}"
            )
        return _load_bundled(path)
    return _load_file(path)


@functools.lru_cache(maxsize=16)
def _load_bundled(path: Path) -> Scenario:
    return _load_file(path)  # bundled files do not change while the program runs


def _load_file(path: Path) -> Scenario:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read file: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        issues = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise ScenarioError(f"{path}: {issues}") from None
    return scenario


def resolve_slices(scenario: Scenario) -> tuple[SliceSettings, ...]:
    """The scenario's slices with ``include`` s expanded (included slices first)."""
    out: list[SliceSettings] = []
    for inc in scenario.include:
        other = {s.name: s for s in resolve_slices(load_scenario(inc.scenario))}
        for name in inc.slices:
            if name not in other:
                raise ScenarioError(
                    f"scenario {scenario.name}: include {inc.scenario} has no slice {name!r}"
                )
            out.append(other[name])
    out.extend(scenario.slices)
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise ScenarioError(f"scenario {scenario.name}: slice names repeat: {names}")
    return tuple(out)


def generate(
    scenario: Scenario,
    *,
    start: float,
    n_intervals: int,
    interval_s: float,
    seed: int,
    on_slice: Callable[[str], None] | None = None,
) -> Trace:
    """Synthetic offered load ``(n_intervals, n_slices, 2)`` bit/s starting at ``start`` (epoch s).

    ``on_slice`` is called after each slice (for a progress bar).
    """
    if n_intervals < 1:
        raise ScenarioError(f"need at least one interval, got {n_intervals}")
    slices = resolve_slices(scenario)
    clock = Clock(start, interval_s, n_intervals, scenario.utc_offset_h)
    load = np.empty((n_intervals, len(slices), 2))
    for i, settings in enumerate(slices):
        load[:, i] = slice_load(settings, clock, seed)
        if on_slice is not None:
            on_slice(settings.name)
    return Trace(start, interval_s, tuple(s.name for s in slices), load)


class Clock:
    """The time axis: ``n`` intervals of ``dt`` seconds; local hour and weekday per interval."""

    def __init__(self, start: float, dt: float, n: int, utc_offset_h: float = 0.0) -> None:
        self.start, self.dt, self.n, self.utc_offset_h = start, dt, n, utc_offset_h
        self._earlier: dict[int, Clock] = {}
        local = start + utc_offset_h * 3600.0 + dt * np.arange(n, dtype=np.float64)
        self.hour: Array = (local / 3600.0) % 24.0  # (n,) hour of day, fractional
        days = np.floor(local / 86400.0).astype(np.int64)
        self.weekday = (days + 3) % 7  # (n,) 0 = Monday (1970-01-01 was a Thursday)

    def earlier(self, pre: int) -> Clock:
        """This axis extended ``pre`` intervals into the past (cached: components share it)."""
        if pre not in self._earlier:
            start = self.start - pre * self.dt
            self._earlier[pre] = Clock(start, self.dt, self.n + pre, self.utc_offset_h)
        return self._earlier[pre]

    def steps(self, seconds: float) -> float:
        return seconds / self.dt


def slice_load(settings: SliceSettings, clock: Clock, seed: int) -> Array:
    """One slice's offered load ``(n, 2)`` bit/s: the sum of its components, capped."""
    total = np.zeros((clock.n, 2))
    for k, comp in enumerate(settings.components):
        rng = component_rng(settings, k, seed)
        if isinstance(comp, Level):
            active = np.ones(clock.n, dtype=bool)
            base = np.full(clock.n, comp.rate) * calendar_factor(comp, clock)
        elif isinstance(comp, Sessions):
            base = _sessions(comp, clock, rng)
            active = base > 0
        elif isinstance(comp, Periodic):
            base = _periodic(comp, clock, rng)
            active = np.ones(clock.n, dtype=bool)
        else:
            base = _cyclic(comp, clock, rng)
            active = base > comp.idle
        rate = base[:, None] * np.array([comp.split.dl, comp.split.ul])
        for noise in (comp.noise, comp.drift):
            if noise is not None:
                rate *= _lognormal_ar(noise, clock, rng)
        if comp.spikes is not None:
            rate += _spikes(comp.spikes, clock, rng, active)[:, None] * np.array(
                [comp.split.dl, comp.split.ul]
            )
        total += rate
    if settings.cap is not None:
        np.minimum(total, settings.cap, out=total)
    return total


def component_rng(settings: SliceSettings, k: int, seed: int) -> np.random.Generator:
    """The random stream of component ``k`` of a slice: its own, or the named ``stream``
    it shares with components of other slices (the same session times)."""
    comp = settings.components[k]
    key = settings.name if comp.stream is None else f"stream:{comp.stream}"
    return np.random.default_rng([seed, zlib.crc32(key.encode()), 0 if comp.stream else k])


def calendar_factor(comp: Any, clock: Clock) -> Array:
    """Calendar factor per interval ``(n,)``: day profile x week profile x schedule window."""
    factor = np.ones(clock.n)
    if comp.day is not None:
        hourly = np.asarray(comp.day, dtype=np.float64)
        factor *= np.interp(clock.hour, np.arange(25.0), np.append(hourly, hourly[0]))
    if comp.week is not None:
        factor *= np.asarray(comp.week, dtype=np.float64)[clock.weekday]
    if comp.when is not None:
        factor *= _schedule(comp.when, clock)
    return factor


def _schedule(when: When, clock: Clock) -> npt.NDArray[np.bool_]:
    """True where ``when`` holds ``(n,)``; a window past midnight belongs to the day it starts."""
    days = np.zeros(7, dtype=bool)
    days[[WEEKDAYS.index(d) for d in when.days]] = True
    on = np.zeros(clock.n, dtype=bool)
    for start, end in when.hours:
        on |= days[clock.weekday] & (clock.hour >= start) & (clock.hour < min(end, 24.0))
        if end > 24.0:  # the part after midnight counts for the previous day
            on |= days[(clock.weekday - 1) % 7] & (clock.hour < end - 24.0)
    return on


def _lognormal(setting: LogNormalSetting, rng: np.random.Generator, size: int) -> Array:
    values = setting.median * np.exp(setting.sigma * rng.standard_normal(size))
    if setting.max is not None:
        np.minimum(values, setting.max, out=values)
    return values


def _sessions(comp: Sessions, clock: Clock, rng: np.random.Generator) -> Array:
    """Sum of the rates of the sessions active in each interval ``(n,)`` bit/s.

    Sessions start from ``pre`` intervals before the trace (the longest
    plausible session, at most a day) so the trace opens in steady state.
    """
    longest = comp.duration.max or comp.duration.median * math.exp(3.0 * comp.duration.sigma)
    pre = min(math.ceil(min(longest, 86400.0) / clock.dt), 10 * clock.n)
    if pre > 0:
        return _sessions_on(comp, clock.earlier(pre), rng)[pre:]
    return _sessions_on(comp, clock, rng)


def _sessions_on(comp: Sessions, clock: Clock, rng: np.random.Generator) -> Array:
    starts, ends, rates = session_list(comp, clock, rng)
    return session_rate(starts, ends, rates, clock.n)


def session_rate(
    starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64], rates: Array, n: int
) -> Array:
    """The summed rate ``(n,)`` of sessions running over ``[start, end)``, each within
    ``[0, n]``."""
    delta = np.bincount(starts, weights=rates, minlength=n + 1)
    delta -= np.bincount(ends, weights=rates, minlength=n + 1)
    out: Array = np.cumsum(delta, dtype=np.float64)[:n]
    np.maximum(out, 0.0, out=out)  # rounding residue of the running sum
    out[out < 1e-6] = 0.0
    return out


def session_intensity(comp: Sessions, clock: Clock) -> Array:
    """Expected session starts per interval ``(n,)``."""
    return comp.per_hour * clock.dt / 3600.0 * calendar_factor(comp, clock)


def session_list(
    comp: Sessions, clock: Clock, rng: np.random.Generator
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], Array]:
    """The sessions a component keeps: ``(starts, ends, rates)``, ``ends`` exclusive and
    at most ``clock.n``; with ``exclusive`` only those that begin after the last one kept
    has ended."""
    counts = rng.poisson(session_intensity(comp, clock))
    starts = np.repeat(np.arange(clock.n), counts)
    n_sessions = len(starts)
    length = np.maximum(1, np.round(_lognormal(comp.duration, rng, n_sessions) / clock.dt))
    ends = np.minimum(starts + length.astype(np.int64), clock.n)
    rates = _lognormal(comp.rate, rng, n_sessions)
    if comp.exclusive and n_sessions:
        keep = np.zeros(n_sessions, dtype=bool)
        busy_until = -1
        for j, (s, e) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
            if s >= busy_until:
                keep[j] = True
                busy_until = e
        starts, ends, rates = starts[keep], ends[keep], rates[keep]
    return starts, ends, rates


def _periodic(comp: Periodic, clock: Clock, rng: np.random.Generator) -> Array:
    """``devices`` periodic senders: Poisson message counts per interval, regimes in the count."""
    messages = rng.poisson(periodic_messages_mean(comp, clock, regime_factor(comp, clock, rng)))
    result: Array = (messages * (comp.message_bytes * 8.0 / clock.dt)).astype(np.float64)
    return result


def regime_factor(comp: Periodic, clock: Clock, rng: np.random.Generator) -> Array:
    """The device count's factor per interval ``(n,)``: 1 until the first regime change,
    then a mean-1 lognormal per regime."""
    if comp.regimes_per_day <= 0:
        return np.ones(clock.n)
    changes = rng.random(clock.n) < comp.regimes_per_day * clock.dt / 86400.0
    regime = np.cumsum(changes)
    factors = np.exp(
        comp.regime_sigma * rng.standard_normal(int(regime[-1]) + 1) - comp.regime_sigma**2 / 2
    )
    factors[0] = 1.0
    out: Array = factors[regime]
    return out


def periodic_messages_mean(comp: Periodic, clock: Clock, factor: Array) -> Array:
    """Expected messages per interval for a regime ``factor`` (per interval or broadcast)."""
    devices = comp.devices * factor * calendar_factor(comp, clock)
    out: Array = devices * clock.dt / comp.period
    return out


def _cyclic(comp: Cyclic, clock: Clock, rng: np.random.Generator) -> Array:
    """Cyclic control: a level uniform in [low, high] per shift while scheduled, else idle."""
    shift_index, levels = shift_levels(comp, clock, rng)
    running = calendar_factor(comp, clock)
    result: Array = np.where(running > 0, levels[shift_index] * running, comp.idle)
    return result


def shift_levels(
    comp: Cyclic, clock: Clock, rng: np.random.Generator
) -> tuple[npt.NDArray[np.int64], Array]:
    """Each interval's shift (0 = the first's) ``(n,)`` and each shift's level."""
    shift_index = np.floor((clock.start + clock.dt * np.arange(clock.n)) / comp.shift).astype(
        np.int64
    )
    shift_index -= shift_index[0]
    levels = rng.uniform(comp.low, comp.high, int(shift_index[-1]) + 1)
    return shift_index, levels


def _lognormal_ar(noise: Noise, clock: Clock, rng: np.random.Generator) -> Array:
    """Mean-1 multiplicative noise ``(n, 2)``: exp of an AR(1) Gaussian, correlation ``corr``.

    A process correlated over many intervals is drawn on a coarser grid (a tenth
    of ``corr``) and interpolated linearly: the same shape at a fraction of the cost.
    """
    if noise.sigma == 0:
        return np.ones((clock.n, 2))
    gauss, step, _ = ar_grid(noise, clock, rng)
    if step > clock.dt:
        m = len(gauss)
        at = np.arange(clock.n) * (clock.dt / step)
        gauss = np.stack([np.interp(at, np.arange(m), gauss[:, d]) for d in range(2)], axis=1)
    else:
        gauss = gauss[: clock.n]
    result: Array = np.exp(noise.sigma * gauss - noise.sigma**2 / 2.0)
    return result


def ar_grid(noise: Noise, clock: Clock, rng: np.random.Generator) -> tuple[Array, float, float]:
    """The unit-variance AR(1) behind :func:`_lognormal_ar` on its own grid: ``(values (m,
    2), grid step s, correlation per step)``; the step is the interval or a tenth of
    ``corr``, whichever is longer (sigma 0 draws nothing)."""
    step = max(clock.dt, noise.corr / 10.0)
    m = math.ceil(clock.n * clock.dt / step) + 2
    eps = rng.standard_normal((m, 2))
    phi = math.exp(-step / noise.corr)
    eps[1:] *= math.sqrt(1.0 - phi * phi)  # stationary from the first step: unit variance
    return ar1(eps, phi), step, phi


def ar1(innovations: Array, phi: float) -> Array:
    """``x[t] = phi * x[t-1] + innovations[t]`` (``x[-1] = 0``) along axis 0 of ``(n, k)``.

    Vectorised in blocks of ``L`` steps where ``phi ** -L`` stays below ``e**200``:
    inside a block ``x = phi**j * cumsum(e * phi**-j)``; only the block carries
    are a Python loop (``n / L`` steps).
    """
    n, k = innovations.shape
    if n == 0 or phi < 2e-9:  # correlation below 2e-9 after one step: white noise
        return innovations.copy()
    length = max(1, min(n, int(200.0 / -math.log(phi)))) if phi < 1.0 else n
    n_blocks = -(-n // length)
    padded = np.zeros((n_blocks * length, k))
    padded[:n] = innovations
    blocks = padded.reshape(n_blocks, length, k)
    j = np.arange(length, dtype=np.float64)
    local = np.cumsum(blocks * (phi**-j)[None, :, None], axis=1) * (phi**j)[None, :, None]
    carry = np.zeros((n_blocks, k))
    phi_l = phi**length
    ends = local[:, -1, :]
    for b in range(1, n_blocks):
        carry[b] = ends[b - 1] + phi_l * carry[b - 1]
    x = local + carry[:, None, :] * (phi ** (j + 1.0))[None, :, None]
    out: Array = x.reshape(-1, k)[:n]
    return out


def _spikes(
    spikes: Spikes, clock: Clock, rng: np.random.Generator, active: npt.NDArray[np.bool_]
) -> Array:
    """Pareto-sized bursts ``(n,)`` bit/s lasting ``length``, only where the component is active."""
    hits, sizes, length = spike_hits(spikes, clock, rng)
    delta = np.bincount(hits, weights=sizes, minlength=clock.n + length)
    delta -= np.bincount(hits + length, weights=sizes, minlength=clock.n + length)
    out: Array = np.cumsum(delta, dtype=np.float64)[: clock.n]
    out[out < 1e-6] = 0.0
    return out * active


def spike_probability(spikes: Spikes, clock: Clock) -> float:
    """The chance that a spike begins in an interval."""
    return spikes.per_hour * clock.dt / 3600.0


def spike_hits(
    spikes: Spikes, clock: Clock, rng: np.random.Generator
) -> tuple[npt.NDArray[np.int64], Array, int]:
    """``(intervals where a spike begins, their sizes bit/s, length in intervals)``."""
    hits = np.flatnonzero(rng.random(clock.n) < spike_probability(spikes, clock))
    sizes = spikes.scale * (1.0 + rng.pareto(spikes.shape, len(hits)))
    if spikes.max is not None:
        np.minimum(sizes, spikes.max, out=sizes)
    return hits, sizes, max(1, round(clock.steps(spikes.length)))


def scenario_slice_names(names: Iterable[str]) -> tuple[str, ...]:
    """Slice names of scenarios, in order (bundled names or paths)."""
    out: list[str] = []
    for name in names:
        out.extend(s.name for s in resolve_slices(load_scenario(name)))
    return tuple(out)
