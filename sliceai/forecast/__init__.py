"""The generative traffic model (PyTorch): probabilistic forecasts and synthetic traces.

This is an adapter around the pure core: only this package imports torch.
Main entry point: :class:`ForecastPipeline` (``load``, ``sample``, ``quantiles``).
Names are imported on first use, so ``sliceai.forecast.commands`` (the CLI) does
not pay torch's import time until a command actually runs the model.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sliceai.forecast.checkpoint import default_checkpoint
    from sliceai.forecast.config import ForecastConfig
    from sliceai.forecast.errors import ForecastError
    from sliceai.forecast.pipeline import ForecastPipeline, resolve_device

_WHERE = {
    "ForecastConfig": "sliceai.forecast.config",
    "ForecastError": "sliceai.forecast.errors",
    "ForecastPipeline": "sliceai.forecast.pipeline",
    "default_checkpoint": "sliceai.forecast.checkpoint",
    "resolve_device": "sliceai.forecast.pipeline",
}

__all__ = [
    "ForecastConfig",
    "ForecastError",
    "ForecastPipeline",
    "default_checkpoint",
    "resolve_device",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'sliceai.forecast' has no attribute {name!r}")
