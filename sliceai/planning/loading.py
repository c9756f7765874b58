"""``--model``: the forecaster a user names, built the same way for every command.

``sliceai serve``, ``sliceai replay`` (the ``sliceai`` allocator) and ``sliceai
evaluate`` all call :func:`load_forecaster`, so they forecast with the same object
and settings: the generative model pooled with EWMA and the rolling empirical
quantile (:mod:`sliceai.planning.pool`). The model's adapter is loaded by name through
:func:`sliceai.plugins.load`, so the pure core pulls in torch only when a model is
asked for.
"""

from __future__ import annotations

from sliceai.planning.baselines import EwmaForecaster, RollingQuantileForecaster
from sliceai.planning.forecasters import Forecaster
from sliceai.planning.pool import PooledForecaster
from sliceai.plugins import load

#: ``--model`` names that are not checkpoint directories.
EMPIRICAL = "empirical"
DEFAULT_MODEL = "default"
#: The class adapting the PyTorch model to :class:`Forecaster` (its module imports torch).
MODEL_ADAPTER = "sliceai.forecast.forecaster:ModelForecaster"


def load_forecaster(
    model: str | None = None, device: str = "auto", threads: int | None = None, pool: bool = True
) -> Forecaster:
    """``empirical``: rolling empirical quantiles (no torch); ``default`` or None: the
    bundled generative model; anything else: a checkpoint directory. With ``pool`` (the
    default) the model is pooled with EWMA and the rolling quantile. ``threads``: torch
    threads for this process (None: torch's default).

    Raises the adapter's ``ForecastError`` (a ValueError) for a bad checkpoint, and
    ImportError when torch is not installed.
    """
    if model == EMPIRICAL:
        return RollingQuantileForecaster()
    path = None if model in (None, DEFAULT_MODEL) else model
    loaded: Forecaster = load(MODEL_ADAPTER).load(path, device=device, threads=threads)
    return pooled(loaded) if pool else loaded


#: Weights of the model, EWMA and the rolling quantile before any loss is seen: the
#: model leads until it forecasts worse (chosen on dev traces: research/planning).
POOL_PRIOR = (0.8, 0.1, 0.1)


def pooled(model: Forecaster) -> PooledForecaster:
    """``model`` pooled with EWMA and the rolling empirical quantile (the model first)."""
    return PooledForecaster([model, EwmaForecaster(), RollingQuantileForecaster()], POOL_PRIOR)
