"""One-slice sessions traces at 10 s for the session filter's tests."""

from __future__ import annotations

import numpy as np

from sliceai.forecast.scenarios import START_EPOCH_S
from sliceai.traffic.generators import generate
from sliceai.traffic.scenario_model import Scenario

#: Sparse sessions: busy about a seventh of the time, idle (exactly 0) in between.
SPARSE: dict[str, object] = {
    "kind": "sessions",
    "per_hour": 0.8,
    "duration": {"median": "10 min", "sigma": 0.5, "max": "1 h"},
    "rate": {"median": "50 Mbps", "sigma": 0.4},
    "noise": {"sigma": 0.15, "corr": "5 s"},
}


def sessions_load(
    component: dict[str, object], n: int, seed: int, cap: str | None = None
) -> np.ndarray:
    """The downlink load ``(n,)`` bit/s of one slice made of ``component``, 10 s clock."""
    settings: dict[str, object] = {"name": "s", "components": [component]}
    if cap is not None:
        settings["cap"] = cap
    scenario = Scenario.model_validate({"name": "t", "slices": [settings]})
    trace = generate(scenario, start=START_EPOCH_S, n_intervals=n, interval_s=10.0, seed=seed)
    return trace.load_bps[:, 0, 0].astype(np.float64)
