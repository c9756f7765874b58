"""Scores against closed forms (the baselines: tests/planning/test_planning_baselines.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtri
from scipy.stats import norm

from sliceai.forecast.metrics import (
    CRPS_LEVELS,
    covered,
    crps_ensemble,
    crps_quantiles,
    interval_levels,
    pinball_loss,
)


def test_crps_of_a_gaussian_ensemble_matches_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(4, 20000))
    y = np.array([-1.0, 0.0, 0.3, 2.0])
    exact = y * (2 * norm.cdf(y) - 1) + 2 * norm.pdf(y) - 1 / np.sqrt(np.pi)
    np.testing.assert_allclose(crps_ensemble(samples, y), exact, atol=0.01)


def test_crps_of_a_point_is_the_absolute_error() -> None:
    np.testing.assert_allclose(crps_ensemble(np.array([[3.0]]), np.array([5.0])), [2.0])


def test_pinball_and_coverage() -> None:
    loss = pinball_loss(np.array([[1.0, 2.0]]), np.array([3.0]), (0.5, 0.9))
    np.testing.assert_allclose(loss, [[1.0, 0.9]])
    assert covered(0.0, 0.0, 0.0)
    assert not covered(1.0, 2.0, 2.5)
    assert interval_levels(0.95) == pytest.approx((0.025, 0.975))


def test_quantile_grid_crps_of_a_gaussian_matches_the_closed_form() -> None:
    y = np.linspace(-5.0, 5.0, 1001)
    exact = y * (2 * norm.cdf(y) - 1) + 2 * norm.pdf(y) - 1 / np.sqrt(np.pi)
    q = np.broadcast_to(ndtri(CRPS_LEVELS), (len(y), len(CRPS_LEVELS)))
    approx = crps_quantiles(q, y)
    np.testing.assert_allclose(approx, exact, atol=0.003)  # the docstring's bound
    # Scaled: N(mu, sigma) scores sigma times N(0, 1) at the standardised truth.
    np.testing.assert_allclose(crps_quantiles(3.0 + 2.0 * q, 3.0 + 2.0 * y), 2.0 * approx)
    # On average over truths drawn from the forecast: within 0.05 %.
    draws = np.random.default_rng(1).normal(size=20000)
    qd = np.broadcast_to(ndtri(CRPS_LEVELS), (len(draws), len(CRPS_LEVELS)))
    mean_exact = np.mean(draws * (2 * norm.cdf(draws) - 1) + 2 * norm.pdf(draws)) - 1 / np.sqrt(
        np.pi
    )
    assert np.mean(crps_quantiles(qd, draws)) == pytest.approx(mean_exact, rel=5e-4)


def test_quantile_grid_crps_wants_the_grid() -> None:
    assert CRPS_LEVELS[0] == pytest.approx(0.005)
    assert CRPS_LEVELS[-1] == pytest.approx(0.995)
    np.testing.assert_allclose(np.diff(CRPS_LEVELS), 0.01)
    with pytest.raises(ValueError, match="100 levels"):
        crps_quantiles(np.zeros((2, 5)), np.zeros(2))
