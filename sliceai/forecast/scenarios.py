"""Training and held-out traces from the bundled scenario generators.

Seeds below :data:`HELD_OUT_SEED_BASE` are for training; evaluation uses seeds from
it upwards, and the ``stadium`` scenario mix (``heldout/stadium.yaml``) is never
used in training.
"""

from __future__ import annotations

from pathlib import Path

from sliceai.traffic import Trace
from sliceai.traffic.scenario_model import Scenario

TRAINING_SCENARIOS = ("campus", "hospital", "factory")
#: The held-out scenario mix: a file next to this module, not a bundled scenario.
HELD_OUT_SCENARIO = str(Path(__file__).resolve().parent / "heldout" / "stadium.yaml")
HELD_OUT_SEED_BASE = 1000
#: (scenario, seed) of the held-out evaluation: the training scenarios on unseen seeds
#: and the held-out mix.
HELD_OUT = (
    ("hospital", HELD_OUT_SEED_BASE + 1),
    ("factory", HELD_OUT_SEED_BASE + 2),
    ("campus", HELD_OUT_SEED_BASE + 3),
    (HELD_OUT_SCENARIO, HELD_OUT_SEED_BASE + 4),
)
#: Dev traces to choose settings on (the same scenarios and clocks as :data:`HELD_OUT`,
#: other seeds): the held-out traces score the final choice only.
DEV_SEED_BASE = 2000
DEV = tuple((name, DEV_SEED_BASE + seed - HELD_OUT_SEED_BASE) for name, seed in HELD_OUT)
#: Monday 2026-01-05 00:00 UTC: every generated trace starts here.
START_EPOCH_S = 1_767_571_200.0
INTERVAL_S = 60.0


def generate_scenario(
    name: str, seed: int, days: float = 7.0, interval_s: float = INTERVAL_S
) -> Trace:
    """``days`` of bundled scenario ``name`` at ``interval_s``; ValueError if unknown."""
    from sliceai.traffic.generators import load_scenario

    return _generate(load_scenario(name), seed, days, interval_s)


def generate_variant(
    name: str, seed: int, days: float = 7.0, interval_s: float = INTERVAL_S
) -> Trace:
    """``days`` of a randomised variant of bundled scenario ``name``
    (:func:`sliceai.forecast.randomized.randomized_scenario` with ``seed``), generated
    with ``seed``."""
    from sliceai.forecast.randomized import randomized_scenario
    from sliceai.traffic.generators import load_scenario

    return _generate(randomized_scenario(load_scenario(name), seed), seed, days, interval_s)


def _generate(scenario: Scenario, seed: int, days: float, interval_s: float) -> Trace:
    from sliceai.traffic.generators import generate

    n = round(days * 86400.0 / interval_s)
    return generate(scenario, start=START_EPOCH_S, n_intervals=n, interval_s=interval_s, seed=seed)
