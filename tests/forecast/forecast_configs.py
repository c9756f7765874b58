"""Small model configs the forecast tests train in seconds."""

from __future__ import annotations

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
