"""The tiny forecast checkpoint of the forecast tests, for the assessment's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sliceai.forecast.checkpoint import save_model
from sliceai.forecast.config import ForecastConfig
from sliceai.forecast.model import ForecastModel

TINY = ForecastConfig(
    context_length=32,
    max_horizon=16,
    hidden_size=16,
    step_embed_size=8,
    decoder_hidden_size=16,
    rank=2,
)


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    out = tmp_path / "ckpt"
    save_model(ForecastModel(TINY).eval(), out, note="test")
    return out
