"""Planning: forecasters and the planner that turns their forecasts into rates.

Pure (numpy, SciPy and the solver; no torch, grpc or os-ken). The replay's solver
allocators, the live control loop and the evaluation all go through it:

- :mod:`sliceai.planning.forecasters`: the :class:`Forecaster` contract;
- :mod:`sliceai.planning.baselines`: rolling quantile, EWMA, seasonal naive;
- :mod:`sliceai.planning.pool`: :class:`PooledForecaster` (the model and the baselines,
  weighted online by their recent loss);
- :mod:`sliceai.planning.risk`: :class:`RiskControl` (each slice's level follows its misses);
- :mod:`sliceai.planning.planner`: :class:`Planner` (forecast -> solve -> fall back);
- :mod:`sliceai.planning.loading`: :func:`load_forecaster` (``--model``).
"""

from sliceai.planning.baselines import (
    EwmaForecaster,
    RollingQuantileForecaster,
    SeasonalNaiveForecaster,
)
from sliceai.planning.forecasters import Forecaster
from sliceai.planning.loading import load_forecaster
from sliceai.planning.planner import (
    LEVELS,
    MODES,
    Forecast,
    Planner,
    PlannerSettings,
    PlannerSnapshot,
    PlanStep,
    planning_levels,
)
from sliceai.planning.pool import PooledForecaster
from sliceai.planning.risk import RiskControl

__all__ = [
    "LEVELS",
    "MODES",
    "EwmaForecaster",
    "Forecast",
    "Forecaster",
    "PlanStep",
    "Planner",
    "PlannerSettings",
    "PlannerSnapshot",
    "PooledForecaster",
    "RiskControl",
    "RollingQuantileForecaster",
    "SeasonalNaiveForecaster",
    "load_forecaster",
    "planning_levels",
]
