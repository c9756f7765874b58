"""Small model configs the forecast tests train in seconds."""

from __future__ import annotations

import dataclasses

from sliceai.forecast.config import ForecastConfig
from sliceai.forecast.training.train import TrainOptions

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


def train_options(epochs: int, **kw: object) -> TrainOptions:
    """Seeded CPU training of a few short epochs, no progress bar."""
    return TrainOptions(
        epochs=epochs,
        steps_per_epoch=40,
        batch_size=128,
        seed=3,
        device="cpu",
        validation_windows=256,
        progress=False,
        **kw,
    )  # type: ignore[arg-type]
