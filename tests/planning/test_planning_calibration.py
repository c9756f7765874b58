"""Calibration of the pooled quantiles: the miss rate of each level tracks 1 - level on
any sequence (the bound in :mod:`sliceai.planning.calibration`), a pool whose members'
tails are too thin is corrected, and the offsets travel with the pool's online state."""

from __future__ import annotations

import numpy as np
import pytest

from sliceai.planning import PooledForecaster
from sliceai.planning.calibration import QuantileTracker
from tests.planning.test_planning_pool import Around

LEVELS = np.array([0.1, 0.5, 0.9])


@pytest.mark.parametrize("level", [0.5, 0.9, 0.99])
def test_an_adversary_cannot_push_the_miss_rate_away_from_one_minus_the_level(level) -> None:
    # The adversary sees the quantile issued and places the target just above it (a miss)
    # while the offset is below a random threshold, just below it otherwise: a sequence
    # that fights the tracker. (A steady forecast: every weight is 1.)
    tracker = QuantileTracker(step=0.02, limit=1.5)
    levels = np.array([level])
    rng = np.random.default_rng(7)
    misses, steps = 0, 5000
    pooled = np.array([[1e6]])
    for _ in range(steps):
        issued = tracker.apply(pooled[:, None, :], levels)[0, 0, 0]
        theta = tracker.offsets(1, levels, 1)[0, 0, 0]
        miss = theta < 0.5 * rng.random()
        misses += int(miss)
        tracker.update(pooled, levels, 0, np.array([issued * (1.01 if miss else 0.99)]))
    theta = tracker.offsets(1, levels, 1)[0, 0, 0]
    assert abs(theta) < 1.5  # never clipped, so the identity below is exact
    assert misses / steps - (1 - level) == pytest.approx(theta / (0.02 * steps), abs=1e-12)
    assert abs(misses / steps - (1 - level)) <= 1.5 / (0.02 * steps)


def test_forecasts_of_nearly_nothing_do_not_steer_the_offsets() -> None:
    # A slice idle half the time: forecast ~0 and demanding 0 then, forecast 1e6 and
    # demanding about that otherwise. The idle "hits" must not drag the offsets down.
    tracker = QuantileTracker(step=0.02)
    levels = np.array([0.5, 0.9])
    rng = np.random.default_rng(8)
    for t in range(4000):
        busy = (t // 200) % 2 == 0
        pooled = np.array([[1e6, 1.3e6]]) if busy else np.array([[1e2, 1.3e2]])
        actual = 1e6 * rng.lognormal(0.0, 0.2, 1) if busy else np.zeros(1)
        tracker.update(pooled, levels, 0, actual)
    theta = tracker.offsets(1, levels, 1)[0, 0]
    assert np.all(np.abs(theta) < 0.2)  # unweighted, 2000 idle hits would reach -1.5


def test_too_thin_tails_are_widened_until_the_interval_covers_what_it_says() -> None:
    # One member whose 10-90 % interval is a fifth of the traffic's: it covers ~25 %.
    rng = np.random.default_rng(4)
    history = 1e6 * rng.lognormal(0.0, 0.25, (2, 3000))
    origins = np.arange(1, 3001)

    def covered(step: float) -> float:
        pool = PooledForecaster([Around("thin", 1e6, 0.04)], calibration_step=step)
        q = pool.quantiles_at(history, origins, LEVELS, 0.0, 1.0)[1500:-1, :, 0, :]
        later = history[:, 1501:].T
        return float(np.mean((later >= q[..., 0]) & (later <= q[..., 2])))

    assert covered(0.0) < 0.4
    assert 0.75 < covered(0.05) < 0.85


def test_offsets_follow_the_pool_state_and_a_query_view_uses_its_rows() -> None:
    rng = np.random.default_rng(5)
    history = 1e6 * rng.lognormal(0.0, 0.3, (3, 400))
    history[2] *= 2.0  # series 2 runs at twice the member's centre: its offsets differ
    pool = PooledForecaster([Around("thin", 1e6, 0.05)], calibration_step=0.05)
    pool.quantiles_at(history, np.arange(1, 400), LEVELS, 0.0, 1.0)
    twin = PooledForecaster([Around("thin", 1e6, 0.05)], calibration_step=0.05)
    twin.load_online_state(pool.online_state())
    a = pool.quantiles_at(history, np.array([400]), LEVELS, 0.0, 1.0)
    b = twin.quantiles_at(history, np.array([400]), LEVELS, 0.0, 1.0)
    np.testing.assert_array_equal(a, b)
    # A side query for series 2 alone answers with series 2's offsets, not the prior's.
    offsets = dict(pool.calibration.offset)
    view = pool.for_queries(np.array([2])).quantiles(history[2:], LEVELS, 0.0, 1.0)
    theta = pool.calibration.offsets(3, LEVELS, 1)[2, 0]
    np.testing.assert_allclose(
        view[0, 0], np.sort(1e6 * (1 + 0.05 * np.array([-1.28, 0, 1.28])) * np.exp(theta))
    )
    assert theta[1] > 0.3  # the median of series 2 has been raised towards 2e6
    assert pool.calibration.offset.keys() == offsets.keys()


def test_a_step_of_zero_issues_the_pooled_quantiles_unchanged() -> None:
    rng = np.random.default_rng(6)
    history = 1e6 * rng.lognormal(0.0, 0.3, (2, 200))
    on = PooledForecaster([Around("thin", 1e6, 0.05)], calibration_step=0.0)
    q = on.quantiles_at(history, np.arange(1, 200), LEVELS, 0.0, 1.0)
    np.testing.assert_allclose(
        q[-1, :, 0], np.broadcast_to(1e6 * (1 + 0.05 * np.array([-1.28, 0, 1.28])), (2, 3))
    )


@pytest.mark.parametrize(("step", "limit"), [(-0.1, 1.0), (0.01, 0.0)])
def test_bad_settings_are_refused(step, limit) -> None:
    with pytest.raises(ValueError, match="step"):
        QuantileTracker(step, limit)
