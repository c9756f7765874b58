"""Fixtures of the studies' tests: a tiny untrained model (its forecasts are plumbing,
not skill)."""

from __future__ import annotations

import pytest
import torch

from sliceai.forecast import ForecastConfig, ForecastPipeline
from sliceai.forecast.model import ForecastModel

TINY = ForecastConfig(
    context_length=32, max_horizon=8, hidden_size=16, step_embed_size=8, decoder_hidden_size=16
)


@pytest.fixture
def tiny_pipeline() -> ForecastPipeline:
    torch.manual_seed(0)
    return ForecastPipeline(ForecastModel(TINY).eval(), device="cpu")
