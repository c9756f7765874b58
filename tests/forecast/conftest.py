"""Shared fixtures: a tiny untrained model (fast) and a tiny checkpoint on disk."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from forecast_configs import TINY

from sliceai.forecast import ForecastPipeline
from sliceai.forecast.checkpoint import save_model
from sliceai.forecast.model import ForecastModel


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
