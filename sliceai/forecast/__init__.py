"""The generative traffic model (PyTorch): probabilistic forecasts and synthetic traces.

This is an adapter around the pure core: only this package imports torch (and it
does so at its top, so the command line's parsers live outside it, in
:mod:`sliceai.forecast_commands`). Main entry point: :class:`ForecastPipeline`
(``load``, ``sample``, ``quantiles``); :class:`sliceai.forecast.forecaster.ModelForecaster`
adapts it to :class:`sliceai.planning.Forecaster`.
"""

from __future__ import annotations

from sliceai.forecast.checkpoint import default_checkpoint
from sliceai.forecast.config import ForecastConfig
from sliceai.forecast.errors import ForecastError
from sliceai.forecast.pipeline import ForecastPipeline, resolve_device

__all__ = [
    "ForecastConfig",
    "ForecastError",
    "ForecastPipeline",
    "default_checkpoint",
    "resolve_device",
]
