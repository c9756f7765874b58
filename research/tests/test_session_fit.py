"""Session laws fitted from the load (``research.forecast.session_fit``): moments and edges."""

from __future__ import annotations

import math

import numpy as np
import pytest

from research.forecast.session_fit import fit_session_law
from research.tests.session_traces import SPARSE, sessions_load
from sliceai.forecast.scenarios import START_EPOCH_S
from sliceai.traffic.generators import Clock


def _mean_length_min(hazard: np.ndarray, dt: float) -> float:
    return float(np.cumprod(1.0 - hazard).sum()) * dt / 60.0


def test_a_busy_sessions_slice_is_fitted_from_its_moments() -> None:
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
    n = 17_280
    values = sessions_load(component, n, seed=3)
    fitted = fit_session_law(values, Clock(START_EPOCH_S, 10.0, n + 16), n)
    assert fitted is not None
    assert fitted.way == "moments"
    law = fitted.law
    assert _mean_length_min(law.hazard, 10.0) == pytest.approx(15.0 * math.exp(0.08), rel=0.25)
    assert law.rate.median == pytest.approx(3e6, rel=0.3)
    assert float(law.intensity.mean()) * 360.0 == pytest.approx(12.0, rel=0.35)
    assert 0.05 < law.sigma < 0.2


def test_a_sparse_sessions_slice_is_fitted_from_its_edges() -> None:
    """Four days of 0.8 sessions an hour, 10-minute median: starts, lengths and rates are
    read off the idle / busy edges, near the generator's."""
    n = 34_560
    values = sessions_load(SPARSE, n, seed=7)
    assert np.mean(values > 0) < 0.2
    fitted = fit_session_law(values, Clock(START_EPOCH_S, 10.0, n + 16), n)
    assert fitted is not None
    assert fitted.way == "edges"
    law = fitted.law
    assert _mean_length_min(law.hazard, 10.0) == pytest.approx(10.0 * math.exp(0.125), rel=0.25)
    assert law.rate.median == pytest.approx(50e6, rel=0.25)
    assert float(law.intensity[:n].mean()) * 360.0 == pytest.approx(0.8, rel=0.3)
    assert 0.1 < law.sigma < 0.2
    assert law.cap is None


def test_a_binding_cap_is_read_off_the_top_value() -> None:
    n = 34_560
    values = sessions_load(SPARSE, n, seed=7, cap="60 Mbps")
    assert np.sum(values >= 60e6 * (1 - 1e-9)) >= 3
    fitted = fit_session_law(values, Clock(START_EPOCH_S, 10.0, n + 16), n)
    assert fitted is not None
    assert fitted.law.cap == pytest.approx(60e6)


def test_missing_values_leave_the_fit_near_the_whole_ones() -> None:
    n = 34_560
    values = sessions_load(SPARSE, n, seed=7)
    holed = values.copy()
    holed[np.random.default_rng(0).random(n) < 0.05] = np.nan
    clock = Clock(START_EPOCH_S, 10.0, n + 16)
    whole, with_holes = fit_session_law(values, clock, n), fit_session_law(holed, clock, n)
    assert whole is not None
    assert with_holes is not None
    assert with_holes.law.rate.median == pytest.approx(whole.law.rate.median, rel=0.1)
    assert _mean_length_min(with_holes.law.hazard, 10.0) == pytest.approx(
        _mean_length_min(whole.law.hazard, 10.0), rel=0.25
    )


@pytest.mark.parametrize("values", [np.zeros(2000), np.full(2000, np.nan)], ids=["zero", "nan"])
def test_no_law_is_fitted_to_a_silent_past(values: np.ndarray) -> None:
    assert fit_session_law(values, Clock(START_EPOCH_S, 10.0, 2000), 2000) is None
