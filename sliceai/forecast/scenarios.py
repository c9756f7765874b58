"""Traces from the bundled scenario generators, for ``sliceai train`` and ``sliceai
evaluate`` (``--scenario NAME:SEED[:DAYS]``).

Every generated trace starts at :data:`START_EPOCH_S`. Which seeds trained the bundled
checkpoint and which are held out for its evaluation is the studies' business
(``research/forecast/traces.py``).
"""

from __future__ import annotations

from sliceai.traffic import Trace
from sliceai.traffic.generators import generate, load_scenario
from sliceai.traffic.scenario_model import Scenario

#: Monday 2026-01-05 00:00 UTC: every generated trace starts here.
START_EPOCH_S = 1_767_571_200.0
INTERVAL_S = 60.0


def generate_scenario(
    name: str, seed: int, days: float = 7.0, interval_s: float = INTERVAL_S
) -> Trace:
    """``days`` of bundled scenario ``name`` (or a scenario file) at ``interval_s``;
    ValueError if unknown."""
    return generate_from(load_scenario(name), seed, days, interval_s)


def generate_from(
    scenario: Scenario, seed: int, days: float = 7.0, interval_s: float = INTERVAL_S
) -> Trace:
    """``days`` of ``scenario`` at ``interval_s``, generated with ``seed``."""
    n = round(days * 86400.0 / interval_s)
    return generate(scenario, start=START_EPOCH_S, n_intervals=n, interval_s=interval_s, seed=seed)
