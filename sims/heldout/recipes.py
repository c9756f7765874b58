"""Recipes of the held-out family: what is drawn for each slice, from the seed and the policy.

A slice's *character* is read from its policy entry only (guaranteed against maximum
rate, resource type, latency budget, SST, accepted risk, the links it crosses;
never its name): ``telemetry-like`` (delay-critical or massive-IoT with small
rates), ``session-like`` (other guaranteed slices) or ``best-effort``. The kind sets
the odds of each traffic model (:data:`FAMILY_WEIGHTS`) and the ranges its
parameters are drawn from. Each slice draws from random streams of its own, keyed
by the seed and a hash of the policy and slice names, so adding a slice to a
policy changes no other slice's traffic.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from sims.heldout.models import MarkovModulated, OnOffSessions, Telemetry, TrafficModel
from sims.heldout.timeline import DiurnalProfile
from sliceai.policy import DIRECTIONS, Policy, Slice
from sliceai.policy.fiveqi import ResourceType

KINDS = ("telemetry-like", "session-like", "best-effort")
FAMILY_WEIGHTS: dict[str, dict[str, float]] = {
    "telemetry-like": {"telemetry": 0.55, "markov": 0.30, "on-off": 0.15},
    "session-like": {"on-off": 0.50, "markov": 0.35, "telemetry": 0.15},
    "best-effort": {"on-off": 0.60, "markov": 0.40, "telemetry": 0.0},
}
# one independent random stream per purpose, per slice and seed
_STREAMS = {
    name: code
    for code, name in enumerate(
        (
            "recipe",
            "clock",
            "primary-events",
            "primary-noise",
            "secondary-events",
            "secondary-noise",
            "missing",
            "calibration-clock",
            "calibration-primary-events",
            "calibration-primary-noise",
            "calibration-secondary-events",
            "calibration-secondary-noise",
        ),
        start=1,
    )
}


@dataclass(frozen=True)
class SliceCharacter:
    """What the policy says about a slice, as the generator reads it."""

    guaranteed_bps: tuple[float, float]
    maximum_bps: tuple[float, float]
    risk: float
    latency_budget_ms: float
    delay_critical: bool
    gbr: bool
    massive_iot: bool
    link_capacity_bps: float

    @classmethod
    def of(cls, policy: Policy, slice_: Slice) -> SliceCharacter:
        capacities = [policy.link(name).capacity for name in policy.links_of(slice_.name)]
        resource = slice_.five_qi.resource_type
        return cls(
            (slice_.guaranteed_bps(DIRECTIONS[0]), slice_.guaranteed_bps(DIRECTIONS[1])),
            (slice_.maximum_bps(DIRECTIONS[0]), slice_.maximum_bps(DIRECTIONS[1])),
            slice_.risk,
            slice_.latency_budget_ms,
            resource is ResourceType.DELAY_CRITICAL_GBR or slice_.latency_budget_ms <= 10.0,
            slice_.is_guaranteed,
            slice_.snssai.sst == 3,
            min(capacities, default=math.inf),
        )

    @property
    def kind(self) -> str:
        """``telemetry-like``, ``session-like`` or ``best-effort``."""
        small = max(self.maximum_bps) <= 50e6 or max(self.guaranteed_bps) <= 10e6
        if (self.delay_critical or self.massive_iot) and small:
            return "telemetry-like"
        return "session-like" if self.gbr else "best-effort"


@dataclass(frozen=True)
class SliceRecipe:
    """Everything drawn for one slice; rendering it is deterministic given the seed."""

    name: str
    kind: str
    primary: TrafficModel
    secondary: OnOffSessions | None
    secondary_share: float
    ul_ratio: float
    diurnal: DiurnalProfile
    typical_bps: float
    over_max_cap: float
    missing_rate: float
    maximum_bps: tuple[float, float]
    knee_bps: tuple[float, float]
    ceiling_bps: tuple[float, float]
    key: tuple[int, int]

    @property
    def families(self) -> str:
        if self.secondary is None:
            return self.primary.family
        return f"{self.primary.family}+{self.secondary.family}"

    @property
    def dominant_direction(self) -> int:
        """0 when downlink carries more on average, 1 when uplink does."""
        return 1 if self.ul_ratio > 1.0 else 0


def stream(seed: int, recipe_key: tuple[int, int], purpose: str) -> np.random.Generator:
    """The random stream for one purpose (a name in ``_STREAMS``) of one slice."""
    entropy = [seed, *recipe_key, _STREAMS[purpose]]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def _recipe_key(policy: Policy, slice_: Slice) -> tuple[int, int]:
    """Policy and slice names hashed: a slice's traffic does not change when others are added."""
    return zlib.crc32(policy.name.encode("utf-8")), zlib.crc32(slice_.name.encode("utf-8"))


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _draw_on_off(rng: np.random.Generator, kind: str) -> OnOffSessions:
    if kind == "best-effort":  # many short flows
        n, on_min, cap, off, rate_sigma, jitter = (
            (10, 50),
            (5, 60),
            1_800,
            (30, 600),
            (0.8, 1.5),
            (0.15, 0.4),
        )
    elif kind == "session-like":  # a few long sessions (a procedure, a call, a stream)
        n, on_min, cap, off, rate_sigma, jitter = (
            (1, 6),
            (120, 900),
            14_400,
            (600, 3_600),
            (0.4, 0.9),
            (0.08, 0.25),
        )
    else:  # intermittent devices or transfers
        n, on_min, cap, off, rate_sigma, jitter = (
            (2, 10),
            (10, 120),
            1_800,
            (120, 1_800),
            (0.3, 0.8),
            (0.05, 0.2),
        )
    return OnOffSessions(
        n_sources=int(rng.integers(n[0], n[1] + 1)),
        on_min_s=_log_uniform(rng, *on_min),
        on_alpha=float(rng.uniform(1.15, 1.8)),
        on_cap_s=float(cap),
        off_mean_s=_log_uniform(rng, *off),
        off_alpha=float(rng.uniform(1.3, 2.0)) if rng.random() < 0.5 else None,
        rate_sigma=float(rng.uniform(*rate_sigma)),
        jitter_sigma_10s=float(rng.uniform(*jitter)),
    )


def _draw_background(rng: np.random.Generator) -> OnOffSessions:
    """Occasional bulk transfers (logs, updates, images) on top of another model."""
    return OnOffSessions(
        n_sources=int(rng.integers(1, 5)),
        on_min_s=_log_uniform(rng, 5, 60),
        on_alpha=float(rng.uniform(1.2, 1.8)),
        on_cap_s=1_800.0,
        off_mean_s=_log_uniform(rng, 300, 3_600),
        off_alpha=None,
        rate_sigma=float(rng.uniform(0.5, 1.2)),
        jitter_sigma_10s=float(rng.uniform(0.1, 0.3)),
    )


def _draw_markov(rng: np.random.Generator, kind: str) -> MarkovModulated:
    n_states = int(rng.integers(2, 5))
    step = (1.3, 2.5) if kind == "telemetry-like" else (1.5, 4.0)
    levels = np.cumprod(np.concatenate([[1.0], rng.uniform(*step, n_states - 1)]))
    base_hold = (
        _log_uniform(rng, 60, 1_800) if kind == "best-effort" else _log_uniform(rng, 300, 3_600)
    )
    holds = base_hold * np.cumprod(np.concatenate([[1.0], rng.uniform(0.15, 0.6, n_states - 1)]))
    jump = []
    for k in range(n_states):
        weights = np.array([0.0 if j == k else (2.0 if j < k else 1.0) for j in range(n_states)])
        row = rng.dirichlet(np.where(weights > 0, weights, 1.0)) * (weights > 0)
        jump.append(tuple(float(x) for x in row / row.sum()))
    return MarkovModulated(
        levels=tuple(float(x) for x in levels),
        ul_levels=tuple(float(x) for x in levels * np.exp(0.3 * rng.standard_normal(n_states))),
        hold_mean_s=tuple(float(x) for x in np.maximum(holds, 10.0)),
        jump=tuple(jump),
        noise_sigma_10s=tuple(float(x) for x in rng.uniform(0.05, 0.3, n_states)),
    )


def _draw_telemetry(rng: np.random.Generator, kind: str) -> Telemetry:
    devices = (5, 100) if kind == "telemetry-like" else (2, 20)
    jitter = (0.02, 0.1) if kind == "telemetry-like" else (0.05, 0.2)
    return Telemetry(
        always_on_devices=round(_log_uniform(rng, *devices)),
        joins_per_hour=0.0 if rng.random() < 0.3 else _log_uniform(rng, 0.5, 20),
        stay_mean_s=_log_uniform(rng, 3_600, 8 * 3_600),
        device_sigma=float(rng.uniform(0.05, 0.3)),
        jitter_sigma_10s=float(rng.uniform(*jitter)),
        alarm_clusters_per_hour=_log_uniform(rng, 0.05, 2.0),
        followups_mean=float(rng.uniform(0.0, 4.0)),
        cluster_spread_s=_log_uniform(rng, 10, 120),
        burst_median_s=_log_uniform(rng, 2, 60),
        burst_gain=_log_uniform(rng, 0.5, 4.0),
    )


def _draw_diurnal(rng: np.random.Generator, kind: str, weekly: bool) -> DiurnalProfile:
    floor = {"telemetry-like": (0.4, 0.95), "session-like": (0.05, 0.5)}.get(kind, (0.1, 0.5))
    weekend = (0.7, 1.0) if kind == "telemetry-like" else (0.3, 1.0)
    return DiurnalProfile(
        peak_hour=float(rng.uniform(0.0, 24.0)),
        floor=float(rng.uniform(*floor)),
        second_amplitude=float(rng.uniform(0.0, 0.6)),
        second_peak_hour=float(rng.uniform(0.0, 24.0)),
        weekend_level=float(rng.uniform(*weekend)) if weekly else 1.0,
        day_sigma=float(rng.uniform(0.03, 0.15)),
    )


def _typical_range(character: SliceCharacter, direction: int) -> tuple[float, float]:
    """Where the dominant direction's typical busy load (p75 of active intervals) is drawn."""
    g, m = character.guaranteed_bps[direction], character.maximum_bps[direction]
    if g > 0 and math.isfinite(m):
        return 0.5 * g, 0.9 * m
    if math.isfinite(m):
        return 0.15 * m, 0.7 * m  # best effort without a guarantee may run high
    if g > 0:
        return 0.5 * g, 3.0 * g
    if math.isfinite(character.link_capacity_bps):
        return 0.01 * character.link_capacity_bps, 0.15 * character.link_capacity_bps
    return 1e6, 5e7


def draw_recipe(
    policy: Policy,
    slice_: Slice,
    seed: int,
    *,
    family: str | None = None,
    missing_rate: float | None = None,
    weekly: bool = True,
) -> SliceRecipe:
    """The recipe of one slice; ``family`` forces the primary model and drops the secondary."""
    character = SliceCharacter.of(policy, slice_)
    kind = character.kind
    key = _recipe_key(policy, slice_)
    rng = stream(seed, key, "recipe")
    weights = FAMILY_WEIGHTS[kind]
    drawn = str(rng.choice(list(weights), p=np.array(list(weights.values()))))
    chosen = drawn if family is None else family
    primary: TrafficModel
    if chosen == "on-off":
        primary = _draw_on_off(rng, kind)
    elif chosen == "markov":
        primary = _draw_markov(rng, kind)
    else:
        primary = _draw_telemetry(rng, kind)
    background = _draw_background(rng)
    with_background = family is None and chosen != "on-off" and rng.random() < 0.4
    share = float(rng.uniform(0.05, 0.3))
    p_uplink_heavy = {"telemetry-like": 0.45, "session-like": 0.2}.get(kind, 0.1)
    heavy = rng.random() < p_uplink_heavy
    ul_ratio = _log_uniform(rng, 1.2, 4.0) if heavy else _log_uniform(rng, 0.08, 0.7)
    diurnal = _draw_diurnal(rng, kind, weekly)
    dominant = 1 if ul_ratio > 1.0 else 0
    typical = _log_uniform(rng, *_typical_range(character, dominant))
    over_max_cap = float(np.clip(character.risk * rng.uniform(0.5, 5.0), 5e-4, 0.02))
    drawn_missing = 0.0 if rng.random() < 0.5 else _log_uniform(rng, 2e-4, 5e-3)
    knee = tuple(
        m if math.isfinite(m) else character.link_capacity_bps for m in character.maximum_bps
    )
    headroom = float(rng.uniform(1.5, 3.0))
    return SliceRecipe(
        name=slice_.name,
        kind=kind,
        primary=primary,
        secondary=background if with_background else None,
        secondary_share=share if with_background else 0.0,
        ul_ratio=ul_ratio,
        diurnal=diurnal,
        typical_bps=typical,
        over_max_cap=over_max_cap,
        missing_rate=drawn_missing if missing_rate is None else missing_rate,
        maximum_bps=character.maximum_bps,
        knee_bps=(knee[0], knee[1]),
        ceiling_bps=(headroom * knee[0], headroom * knee[1]),
        key=key,
    )
