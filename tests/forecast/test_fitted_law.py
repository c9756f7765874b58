"""The fitted-law prototype (``sims/forecast/fitted_law.py``): the law it reads from the
load alone is near the generator's, and its online choice follows the recent scores."""

from __future__ import annotations

import math
from types import ModuleType

import numpy as np
import pytest
from sims_modules import load_sims_module

from sliceai.forecast.scenarios import START_EPOCH_S
from sliceai.traffic.generators import Clock, generate
from sliceai.traffic.scenario_model import Scenario


@pytest.fixture(scope="module")
def fl() -> ModuleType:
    return load_sims_module("fitted_law", "generator_oracle", "session_filter")


def test_the_fitted_law_is_near_the_generators(fl: ModuleType) -> None:
    """Two days at 10 s of Poisson sessions (12 an hour, 15-minute median, 3 Mbps median,
    10% noise): the mean length, rate and arrival rate read from the load alone lie near
    the generator's (a unit slip or a lost factor would miss by far more)."""
    component = {
        "kind": "sessions",
        "per_hour": 12,
        "duration": {"median": "15 min", "sigma": 0.4, "max": "1 h"},
        "rate": {"median": "3 Mbps", "sigma": 0.4},
        "noise": {"sigma": 0.1, "corr": "10 s"},
    }
    scenario = Scenario.model_validate(
        {"name": "t", "slices": [{"name": "s", "components": [component]}]}
    )
    dt, n = 10.0, 17_280
    trace = generate(scenario, start=START_EPOCH_S, n_intervals=n, interval_s=dt, seed=3)
    values = trace.load_bps[:, 0, 0].astype(np.float64)
    law = fl.fit_law(values, Clock(START_EPOCH_S, dt, n + 16, 0.0), n)
    mean_length_min = float(np.cumprod(1.0 - law.hazard).sum()) * dt / 60.0
    assert mean_length_min == pytest.approx(15.0 * math.exp(0.4**2 / 2), rel=0.25)
    assert law.rate.median == pytest.approx(3e6, rel=0.3)
    assert float(law.intensity.mean()) * 3600.0 / dt == pytest.approx(12.0, rel=0.35)
    assert 0.05 < law.sigma < 0.2


def test_no_law_is_fitted_to_a_silent_past(fl: ModuleType) -> None:
    clock = Clock(START_EPOCH_S, 10.0, 2000, 0.0)
    assert fl.fit_law(np.zeros(2000), clock, 2000) is None


def test_the_online_choice_follows_the_recent_scores(fl: ModuleType) -> None:
    """The pool scores better for 40 origins, then worse: the choice takes it once 5
    origins show it ahead and drops it when the window shows it behind."""
    model = np.ones(100)
    pool = np.where(np.arange(100) < 40, 0.5, 1.5)
    chosen = fl.choose_online(pool, model, 10)
    assert np.all(chosen[:5] == 1.0)  # too little evidence yet
    assert np.all(chosen[5:40] == 0.5)
    assert np.all(chosen[46:] == 1.0)  # from 46 on the last 10 origins hold >5 bad ones
