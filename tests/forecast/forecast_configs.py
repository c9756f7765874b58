"""Small model configs the forecast tests train in seconds."""

from __future__ import annotations

import dataclasses

from sliceai.forecast.config import ForecastConfig

#: Big enough to learn a known distribution, small enough to train in a test.
SMALL = ForecastConfig(
    context_length=32,
    max_horizon=4,
    hidden_size=32,
    step_embed_size=8,
    decoder_hidden_size=16,
    rank=2,
)

#: Untrained, for shapes and plumbing: longer horizon, narrower encoder.
TINY = dataclasses.replace(SMALL, max_horizon=8, hidden_size=16)
