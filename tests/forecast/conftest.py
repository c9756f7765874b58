"""Shared fixtures: a tiny untrained model (fast) and a tiny checkpoint on disk."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sliceai.forecast import ForecastConfig, ForecastPipeline
from sliceai.forecast.model import ForecastModel
from sliceai.forecast.pipeline import save_model

TINY = ForecastConfig(
    context_length=32,
    max_horizon=8,
    hidden_size=16,
    step_embed_size=8,
    decoder_hidden_size=16,
    rank=2,
)


@pytest.fixture
def tiny_model() -> ForecastModel:
    torch.manual_seed(0)
    return ForecastModel(TINY).eval()


@pytest.fixture
def tiny_pipeline(tiny_model: ForecastModel) -> ForecastPipeline:
    return ForecastPipeline(tiny_model, device="cpu")


@pytest.fixture
def tiny_checkpoint(tmp_path: Path, tiny_model: ForecastModel) -> Path:
    out = tmp_path / "ckpt"
    save_model(tiny_model, out, note="test")
    return out
