"""Seeded random policies and demand forecasts, built in memory (benchmarks and tests)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import norm

from sliceai.policy import Policy
from sliceai.solver.demand import DemandForecast

#: (5QI, priority levels to draw from) for guaranteed and best-effort slices.
_GUARANTEED = ((85, (1, 2)), (82, (5, 10)), (2, (15, 20, 40)))
_BEST_EFFORT = ((9, (60, 80, 90)), (8, (70, 80)), (7, (50, 70)))


def random_policy(
    rng: np.random.Generator,
    n_slices: int,
    n_links: int,
    links_per_slice: int = 4,
    tightness: tuple[float, float] = (0.6, 1.2),
    guaranteed_share: float = 0.3,
    capacity_scale: float = 1.0,
) -> tuple[Policy, np.ndarray]:
    """A policy and each slice's median demand ``(n_slices, 2)`` bit/s.

    Each slice crosses ``min(links_per_slice, n_links)`` random links; a link's
    capacity is its slices' summed median demand (DL and UL together averaged)
    times a factor drawn from ``tightness``, and never below its floors plus 10 %;
    then all capacities are multiplied by ``capacity_scale`` (same seed, same
    everything else).
    """
    median = rng.lognormal(np.log(10e6), 1.0, size=(n_slices, 2))
    guaranteed = rng.random(n_slices) < guaranteed_share
    slices: list[dict[str, Any]] = []
    floors = np.zeros((n_slices, 2))
    for i in range(n_slices):
        kinds = _GUARANTEED if guaranteed[i] else _BEST_EFFORT
        qi, levels = kinds[int(rng.integers(len(kinds)))]
        spec: dict[str, Any] = {
            "name": f"s{i}",
            "snssai": {"sst": 2 if guaranteed[i] else 1},
            "five_qi": qi,
            "priority": int(levels[int(rng.integers(len(levels)))]),
            "risk": float(rng.choice([1e-3, 1e-2])) if guaranteed[i] else 0.1,
            "match": [{"protocol": "udp", "ports": [1024 + i]}],
        }
        if guaranteed[i]:
            floors[i] = median[i] * rng.uniform(0.2, 0.8)
            spec["guaranteed"] = {"dl": _rate(floors[i, 0]), "ul": _rate(floors[i, 1])}
        if rng.random() < 0.7:
            cap = np.maximum(median[i] * rng.uniform(1.5, 4.0), floors[i])
            spec["maximum"] = {"dl": _rate(cap[0]), "ul": _rate(cap[1])}
        slices.append(spec)
    per = min(links_per_slice, n_links)
    crossing = np.array([rng.choice(n_links, size=per, replace=False) for _ in range(n_slices)])
    links = []
    for li in range(n_links):
        members = np.flatnonzero((crossing == li).any(axis=1))
        if members.size == 0:
            members = np.array([int(rng.integers(n_slices))])
        demand = median[members].mean(axis=1).sum()
        need = floors[members].max(axis=1).sum() * 1.1
        cap = max(demand * rng.uniform(*tightness), need, 1e6) * capacity_scale
        links.append(
            {"name": f"l{li}", "capacity": _rate(cap), "slices": [f"s{i}" for i in members]}
        )
    data = {"name": "random", "slices": slices, "topology": {"links": links}}
    return Policy.model_validate(data), median


def random_demand(
    rng: np.random.Generator, median: np.ndarray, n_levels: int = 16
) -> DemandForecast:
    """Log-normal forecasts around ``median`` ``(n_slices, 2)`` bit/s, levels in [0.02, 0.98]."""
    levels = np.linspace(0.02, 0.98, n_levels)
    sigma = rng.uniform(0.1, 0.6, size=median.shape)
    center = median * rng.lognormal(0.0, 0.2, size=median.shape)
    z = norm.ppf(levels)
    values = center[:, :, None] * np.exp(sigma[:, :, None] * z)
    return DemandForecast.from_quantiles(levels, values)


def _rate(bps: float) -> str:
    return f"{float(bps):.3f} bps"


def demand_sequence(
    rng: np.random.Generator, median: np.ndarray, n_intervals: int, n_levels: int = 16
) -> list[DemandForecast]:
    """Consecutive forecasts: each slice's level follows a log AR(1) walk (5 % steps) around
    ``median`` ``(n_slices, 2)`` bit/s, with a per-slice spread that drifts slowly."""
    levels = np.linspace(0.02, 0.98, n_levels)
    z = norm.ppf(levels)
    sigma = rng.uniform(0.1, 0.6, size=median.shape)
    walk = np.zeros(median.shape)
    out = []
    for _ in range(n_intervals):
        walk = 0.9 * walk + rng.normal(0.0, 0.05, size=median.shape)
        spread = sigma * np.exp(rng.normal(0.0, 0.05, size=median.shape))
        values = (median * np.exp(walk))[:, :, None] * np.exp(spread[:, :, None] * z)
        out.append(DemandForecast.from_quantiles(levels, values))
    return out
