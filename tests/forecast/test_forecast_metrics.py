"""Scores and baselines against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from sliceai.forecast.baselines import ewma_gaussian, forward_fill, rolling_quantile, seasonal_naive
from sliceai.forecast.metrics import covered, crps_ensemble, interval_levels, pinball_loss


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


def test_baselines_shapes_and_behaviour() -> None:
    x = np.tile(np.arange(10.0), 40)
    x[5] = np.nan
    np.testing.assert_array_equal(
        forward_fill(np.array([np.nan, 1.0, np.nan, 3.0])), [0.0, 1.0, 1.0, 3.0]
    )
    origins = np.array([300, 350])
    sn = seasonal_naive(x, origins, 4, period=10)
    assert sn.ensemble.shape[:2] == (2, 4)
    # A perfectly periodic series: the seasonal naive band collapses onto the truth.
    np.testing.assert_allclose(sn.quantiles((0.5,))[..., 0], [x[300:304], x[350:354]])
    ew = ewma_gaussian(x, origins, 4)
    q = ew.quantiles((0.1, 0.9))
    assert q.shape == (2, 4, 2)
    assert np.all(q[..., 0] <= q[..., 1])
    rq = rolling_quantile(x, origins, 3)
    assert rq.ensemble.shape == (2, 3, 256)
    np.testing.assert_allclose(rq.quantiles((0.0, 1.0))[0, 0], [0.0, 9.0])
