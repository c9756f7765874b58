"""The generative traffic model (PyTorch): probabilistic forecasts and synthetic traces.

This is an adapter around the pure core: only this package imports torch.
Main entry point: :class:`ForecastPipeline` (``load``, ``sample``, ``quantiles``).
"""

from sliceai.forecast.config import ForecastConfig
from sliceai.forecast.errors import ForecastError
from sliceai.forecast.pipeline import ForecastPipeline, default_checkpoint, resolve_device

__all__ = [
    "ForecastConfig",
    "ForecastError",
    "ForecastPipeline",
    "default_checkpoint",
    "resolve_device",
]
