"""Held-out traffic generators, written independently of the bundled scenarios.

For evaluation only: never train a model on these traces or choose a setting by
them (see ``sims/heldout/README.md``).
"""

from sims.heldout.family import (
    DEFAULT_START_EPOCH_S,
    HeldoutError,
    RegimeStep,
    generate_heldout_trace,
    heldout_recipes,
)
from sims.heldout.models import FAMILIES, MarkovModulated, OnOffSessions, Telemetry
from sims.heldout.recipes import SliceRecipe

__all__ = [
    "DEFAULT_START_EPOCH_S",
    "FAMILIES",
    "HeldoutError",
    "MarkovModulated",
    "OnOffSessions",
    "RegimeStep",
    "SliceRecipe",
    "Telemetry",
    "generate_heldout_trace",
    "heldout_recipes",
]
