"""``--model``: the forecaster a user names, built the same way for every command.

``sliceai serve``, ``sliceai replay`` (the ``sliceai`` allocator) and ``sliceai
evaluate`` all call :func:`load_forecaster`, so they forecast with the same object
and settings. The generative model's adapter is imported here on demand: this is
the one place where the pure core loads the PyTorch plug-in.
"""

from __future__ import annotations

import importlib

from sliceai.planning.baselines import RollingQuantileForecaster
from sliceai.planning.forecasters import Forecaster

#: ``--model`` names that are not checkpoint directories.
EMPIRICAL = "empirical"
DEFAULT_MODEL = "default"
#: The module adapting the PyTorch model to :class:`Forecaster` (imports torch).
MODEL_ADAPTER = "sliceai.forecast.forecaster"


def load_forecaster(
    model: str | None = None, device: str = "auto", threads: int | None = None
) -> Forecaster:
    """``empirical``: rolling empirical quantiles (no torch); ``default`` or None: the
    bundled generative model; anything else: a checkpoint directory. ``threads``: torch
    threads for this process (None: torch's default).

    Raises the adapter's ``ForecastError`` (a ValueError) for a bad checkpoint, and
    ImportError when torch is not installed.
    """
    if model == EMPIRICAL:
        return RollingQuantileForecaster()
    adapter = importlib.import_module(MODEL_ADAPTER)
    path = None if model in (None, DEFAULT_MODEL) else model
    loaded: Forecaster = adapter.ModelForecaster.load(path, device=device, threads=threads)
    return loaded
