"""The tail shape fit: lowest CRPS among the shapes whose 95% interval covers about 95%."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtri

from sliceai.forecast.metrics import cap_windows, crps_ensemble, pinball_loss
from sliceai.forecast.mixture import mixture_covered
from sliceai.forecast.training.calibration import (
    TAIL_COVERAGE_TOLERANCE,
    TAIL_CUBIC_GRID,
    TAIL_LINEAR_GRID,
    fit_shape,
)

LOC = 3.0


def _targets(n: int = 400, horizon: int = 8) -> np.ndarray:
    """Log-space targets around LOC: a narrow body (0.5 of the forecast's spread) and
    heavy tails (Student t, 3 degrees of freedom)."""
    rng = np.random.default_rng(11)
    return LOC + 0.5 * rng.standard_t(3, size=(n, horizon))


def _members(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.full((1, *y.shape), LOC), np.ones((1, *y.shape)), np.zeros((1, *y.shape))


def _crps_by_quantiles(y: np.ndarray, a: float, b: float) -> float:
    """CRPS in scale units from a dense quantile grid (2 x mean pinball loss), per window
    divided by its mean target: independent of the fit's sampled estimate."""
    levels = np.linspace(0.0025, 0.9975, 400)
    z = ndtri(levels)
    q = np.expm1(LOC + a * z + b * z**3)
    truth = np.expm1(y)
    pin = pinball_loss(np.broadcast_to(q, (*y.shape, len(levels))), truth, levels)
    per_window = 2.0 * pin.mean(axis=-1).mean(axis=1)
    return float(np.mean(per_window / np.maximum(truth.mean(axis=1), 1.0)))


def test_the_fit_takes_the_sharpest_shape_that_still_covers() -> None:
    y = _targets()
    loc, std, p0 = _members(y)
    a, b = fit_shape(loc, std, p0, y)
    assert a in TAIL_LINEAR_GRID
    assert b in TAIL_CUBIC_GRID
    cover = float(np.mean(mixture_covered(y, loc, std, p0, 0.95, a, b)))
    assert abs(cover - 0.95) <= TAIL_COVERAGE_TOLERANCE
    chosen = _crps_by_quantiles(y, a, b)
    # No other shape that covers as well scores better (up to the sampling noise of the
    # fit's estimate); the candidates' scores span about 4%.
    others = [
        _crps_by_quantiles(y, other_a, other_b)
        for other_a in TAIL_LINEAR_GRID
        for other_b in TAIL_CUBIC_GRID
        if abs(float(np.mean(mixture_covered(y, loc, std, p0, 0.95, other_a, other_b))) - 0.95)
        <= TAIL_COVERAGE_TOLERANCE
    ]
    assert chosen <= min(others) * 1.002
    assert max(others) > 1.02 * min(others)
    assert chosen < _crps_by_quantiles(y, 1.0, 0.0)  # the plain Gaussian is too wide


def test_without_a_covering_shape_the_nearest_coverage_wins() -> None:
    y = _targets()
    loc, std, p0 = _members(y)
    far = loc + 3.0  # every interval misses most targets: no candidate
    a, b = fit_shape(far, std, p0, y)
    covers = [
        float(np.mean(mixture_covered(y, far, std, p0, 0.95, ga, gb)))
        for ga in TAIL_LINEAR_GRID
        for gb in TAIL_CUBIC_GRID
    ]
    assert max(covers) < 0.95 - TAIL_COVERAGE_TOLERANCE
    assert float(np.mean(mixture_covered(y, far, std, p0, 0.95, a, b))) == pytest.approx(
        max(covers), abs=0.02
    )


def test_a_runaway_sample_does_not_turn_the_crps_into_noise() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 0.1, (50, 4, 100))
    y = rng.normal(1.0, 0.1, (50, 4))
    runaway = x.copy()
    runaway[:, :, 0] = 1e26
    plain = crps_ensemble(x, y).mean()
    assert crps_ensemble(cap_windows(x, y), y).mean() == plain  # ordinary windows untouched
    capped = crps_ensemble(cap_windows(runaway, y), y).mean()
    assert capped == pytest.approx(plain, rel=0.05)
    assert abs(crps_ensemble(runaway, y).mean() - plain) > 0.5 * plain  # what it fixes
