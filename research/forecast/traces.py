"""The traces the forecast studies train and score on.

Seeds below :data:`HELD_OUT_SEED_BASE` are for training (``default_model.training_specs``);
evaluation uses seeds from it upwards, and the ``stadium`` scenario mix
(``heldout/stadium.yaml``, next to this module) is never used in training. Settings are
chosen on the dev traces (:data:`DEV`: the same scenarios on other seeds); the held-out
ones (:data:`HELD_OUT`) score the final choice only.
"""

from __future__ import annotations

from pathlib import Path

from sliceai.forecast.scenarios import INTERVAL_S, generate_from
from sliceai.traffic import Trace

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


def generate_variant(
    name: str,
    seed: int,
    days: float = 7.0,
    interval_s: float = INTERVAL_S,
    families: bool = False,
) -> Trace:
    """``days`` of a randomised variant of bundled scenario ``name``
    (:func:`research.forecast.randomized.randomized_scenario` with ``seed``), generated
    with ``seed``; with ``families``, the generic traffic families laid over it
    (:func:`research.forecast.families.widen` with ``seed``)."""
    from research.forecast.families import widen
    from research.forecast.randomized import randomized_scenario
    from sliceai.traffic.generators import load_scenario, resolve_slices

    scenario = randomized_scenario(load_scenario(name), seed)
    trace = generate_from(scenario, seed, days, interval_s)
    if not families:
        return trace
    return widen(trace, seed, [s.cap for s in resolve_slices(scenario)])[0]


def stepped(trace: Trace, factor: float = 1.4) -> Trace:
    """``trace`` with every load times ``factor`` from half-way on."""
    load = trace.load_bps.copy()
    load[trace.n_intervals // 2 :] *= factor
    return Trace(trace.start, trace.interval_s, trace.slices, load)
