"""Training and held-out traces from the bundled scenario generators.

Seeds below :data:`HELD_OUT_SEED_BASE` are for training; evaluation uses seeds from
it upwards, and the ``embb`` scenario mix is never used in training.
"""

from __future__ import annotations

from sliceai.traffic import Trace

TRAINING_SCENARIOS = ("campus", "hospital", "factory")
HELD_OUT_SCENARIOS = ("embb",)
TRAINING_SEEDS = (1, 2, 3)
HELD_OUT_SEED_BASE = 1000
#: Monday 2026-01-05 00:00 UTC: every generated trace starts here.
START_EPOCH_S = 1_767_571_200.0
INTERVAL_S = 60.0


def generate_scenario(
    name: str, seed: int, days: float = 7.0, interval_s: float = INTERVAL_S
) -> Trace:
    """``days`` of bundled scenario ``name`` at ``interval_s``; ValueError if unknown."""
    from sliceai.traffic.generators import generate, load_scenario

    scenario = load_scenario(name)
    n = round(days * 86400.0 / interval_s)
    return generate(scenario, start=START_EPOCH_S, n_intervals=n, interval_s=interval_s, seed=seed)
