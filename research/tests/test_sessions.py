"""The session filter (``research.forecast.sessions``): its length hazard and missing loads."""

from __future__ import annotations

import math

import numpy as np
import pytest

from research.forecast.sessions import SessionLaw, SessionParticleFilter, length_hazard
from sliceai.traffic.scenario_model import LogNormalSetting


def test_the_hazard_is_the_generators_length_law() -> None:
    setting = LogNormalSetting(median=900.0, sigma=0.4, max=3600.0)
    dt = 60.0
    hazard = length_hazard(setting, dt)
    rng = np.random.default_rng(0)
    drawn = np.minimum(setting.median * np.exp(setting.sigma * rng.standard_normal(400_000)), 3600)
    lengths = np.maximum(1, np.round(drawn / dt)).astype(int)
    for age in (5, 10, 15, 25, 40):
        alive = lengths >= age
        empirical = float(np.mean(lengths[alive] == age))
        assert hazard[age] == pytest.approx(empirical, abs=0.01), age
    assert hazard[60] == 1.0  # an hour is the longest a session lasts
    assert hazard[0] == 0.0


def _law(n: int) -> SessionLaw:
    return SessionLaw(
        intensity=np.full(n, 0.02),
        hazard=length_hazard(LogNormalSetting(median=600.0, sigma=0.4, max=3600.0), 10.0),
        rate=LogNormalSetting(median=5e6, sigma=0.3),
        split=1.0,
        sigma=0.1,
        phi=0.3,
        cap=None,
    )


def test_a_missing_load_runs_the_particles_on_unweighed() -> None:
    """NaN is no observation: the weights stay as they were and the sessions age on; the
    next real value is weighed as usual."""
    filt = SessionParticleFilter(_law(100), 500, np.random.default_rng(1))
    for t in range(20):
        filt.update(t, 5e6)
    before_w, before_on, before_age = filt.log_w.copy(), filt.on.copy(), filt.age.copy()
    filt.update(20, math.nan)
    assert np.array_equal(filt.log_w, before_w)
    # sessions that ran on (a few ended; a slot freed may hold a new one, of age 1) are
    # one interval older
    kept = before_on & filt.on & (filt.age > 1)
    assert kept.sum() > 0.9 * before_on.sum()
    assert np.array_equal(filt.age[kept], before_age[kept] + 1)
    filt.update(21, 5e6)
    assert np.all(np.isfinite(filt.log_w))
    paths = filt.forecast(22, 4, 50)
    assert paths.shape == (4, 50)
    assert np.median(paths[0]) == pytest.approx(5e6, rel=0.3)  # still the running session
