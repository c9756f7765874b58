"""The pooled forecast: weight moves to the member that forecasts well, failures cost a
member its weight and not the forecast, and the pool learns the same way one origin at
a time (the live loop) or a chunk at a time (the replay)."""

from __future__ import annotations

import numpy as np
import pytest

from sliceai.planning import Forecaster, PooledForecaster
from sliceai.planning.forecasters import FloatArray, IntArray

LEVELS = np.array([0.1, 0.5, 0.9])


class Around(Forecaster):
    """Quantiles ``center * (1 + spread * z)`` around a fixed center, whatever the history."""

    def __init__(self, name: str, center: float, spread: float = 0.1) -> None:
        self.name = name
        self.center = center
        self.spread = spread

    def quantiles_at(
        self,
        history: FloatArray,
        origins: IntArray,
        levels: FloatArray,
        start_time: float,
        interval_s: float,
        horizon: int = 1,
    ) -> FloatArray:
        z = np.array([-1.28, 0.0, 1.28])[: len(levels)]
        q = self.center * (1 + self.spread * z)
        return np.broadcast_to(q, (len(origins), history.shape[0], horizon, len(levels))).copy()


class Broken(Around):
    def quantiles_at(self, *args: object, **kw: object) -> FloatArray:
        raise RuntimeError("weights are corrupt")


def _history(n: int, level: float = 1e6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return level * (1 + 0.1 * rng.standard_normal((2, n)))


def test_the_weight_moves_to_the_member_that_forecasts_the_traffic() -> None:
    # (no calibration: it would scale what the weights give, tested apart)
    pool = PooledForecaster([Around("far", 3e6), Around("near", 1e6)], calibration_step=0.0)
    history = _history(300)
    q = pool.quantiles_at(history, np.arange(1, 301), LEVELS, 0.0, 1.0)
    w = pool.weights(2)
    assert (w[:, 1] > 0.99).all()  # "near" has all but the weight's dust
    np.testing.assert_allclose(q[0, :, 0, 1], 2e6)  # equal weights before any loss
    np.testing.assert_allclose(q[-1, :, 0, 1], 1e6, rtol=0.02)
    # The weight follows the traffic when it changes.
    later = np.concatenate([history, _history(300, level=3e6, seed=1)], axis=1)
    pool.quantiles_at(later, np.arange(301, 601), LEVELS, 0.0, 1.0)
    assert (pool.weights(2)[:, 0] > 0.99).all()


def test_one_origin_at_a_time_learns_what_a_chunk_learns() -> None:
    members = [Around("a", 1.5e6, 0.3), Around("b", 0.8e6, 0.05), Around("c", 1e6, 0.1)]
    history = _history(200, seed=3)
    chunk = PooledForecaster(members).quantiles_at(history, np.arange(1, 201), LEVELS, 50.0, 1.0)
    live = PooledForecaster(members)
    for o in range(1, 201):
        # the live loop's history is a window that moves on by one interval per call
        first = max(0, o - 64)
        one = live.quantiles(history[:, first:o], LEVELS, 50.0 + first * 1.0, 1.0)
        np.testing.assert_allclose(one, chunk[o - 1], rtol=1e-12)


def test_a_failing_member_loses_its_weight_and_the_plan_is_told() -> None:
    pool = PooledForecaster([Broken("model", 0.0), Around("ewma", 1e6)], calibration_step=0.0)
    q = pool.quantiles_at(_history(10), np.array([5, 6]), LEVELS, 0.0, 1.0)
    np.testing.assert_allclose(q[:, :, 0, 1], 1e6)
    assert (
        pool.last_notes
        == ["model failed (RuntimeError: weights are corrupt); pooled from the others"] * 2
    )


def test_non_finite_values_cost_a_member_its_weight_on_that_series_only() -> None:
    class HalfNan(Around):
        def quantiles_at(self, *args: object, **kw: object) -> FloatArray:
            q = super().quantiles_at(*args, **kw)  # type: ignore[arg-type]
            q[:, 0] = np.nan
            return q

    pool = PooledForecaster([HalfNan("model", 2e6), Around("ewma", 1e6)])
    q = pool.quantiles_at(_history(10), np.array([5]), LEVELS, 0.0, 1.0)
    assert q[0, 0, 0, 1] == pytest.approx(1e6)  # series 0: the model's NaN is left out
    assert q[0, 1, 0, 1] == pytest.approx(1.5e6)  # series 1: both, equal weights
    assert "model returned non-finite quantiles" in pool.last_notes[0]


def test_when_every_member_fails_the_forecast_is_nan_for_the_planner_to_replace() -> None:
    pool = PooledForecaster([Broken("a", 1.0), Broken("b", 1.0)])
    assert np.isnan(pool.quantiles_at(_history(5), np.array([3]), LEVELS, 0.0, 1.0)).all()


def test_reset_forgets_what_was_learnt() -> None:
    pool = PooledForecaster([Around("far", 3e6), Around("near", 1e6)])
    pool.quantiles_at(_history(100), np.arange(1, 101), LEVELS, 0.0, 1.0)
    pool.reset()
    np.testing.assert_allclose(pool.weights(2), 0.5)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"members": []}, "at least one"),
        ({"prior": [1.0]}, "prior"),
        ({"prior": [1.0, 0.0]}, "prior"),
        ({"eta": -1.0}, "eta"),
        ({"memory": 0.5}, "memory"),
    ],
)
def test_bad_settings_are_refused(kw, message) -> None:
    args = {"members": [Around("a", 1.0), Around("b", 2.0)], **kw}
    with pytest.raises(ValueError, match=message):
        PooledForecaster(**args)


def test_a_swapped_in_member_forecasts_from_the_next_call() -> None:
    pool = PooledForecaster([Around("model", 3e6), Around("ewma", 1e6)])
    old = pool.swap_member(0, Around("model", 1e6))
    assert old.center == 3e6  # type: ignore[attr-defined]
    q = pool.quantiles_at(_history(10), np.array([5]), LEVELS, 0.0, 1.0)
    np.testing.assert_allclose(q[0, :, 0, 1], 1e6)


def test_missing_targets_teach_nothing_and_warn_nothing() -> None:
    pool = PooledForecaster([Around("far", 3e6), Around("near", 1e6)])
    history = _history(50)
    history[:, 10:40] = np.nan  # (the suite turns warnings into errors)
    pool.quantiles_at(history, np.arange(1, 51), LEVELS, 0.0, 1.0)
    assert (pool.weights(2)[:, 1] > 0.9).all()  # learnt from the 19 intervals it saw


def test_every_step_of_a_forecast_is_scored_once_its_target_is_seen() -> None:
    # One origin every 4 intervals with a horizon of 4: each interval is a target once.
    strided = PooledForecaster([Around("far", 3e6), Around("near", 1e6)])
    strided.quantiles_at(_history(200), np.arange(1, 200, 4), LEVELS, 0.0, 1.0, horizon=4)
    dense = PooledForecaster([Around("far", 3e6), Around("near", 1e6)])
    dense.quantiles_at(_history(200), np.arange(1, 200), LEVELS, 0.0, 1.0)
    assert strided.loss is not None
    assert dense.loss is not None
    np.testing.assert_allclose(strided.loss, dense.loss, rtol=0.02)


def test_each_level_goes_to_the_member_whose_quantile_there_has_been_right() -> None:
    # "sharp" has the right median and tails far too thin; "wide" a fair spread.
    sharp, wide = Around("sharp", 1e6, 0.01), Around("wide", 1e6, 0.3)
    pool = PooledForecaster([sharp, wide])
    rng = np.random.default_rng(4)
    history = 1e6 * rng.lognormal(0.0, 0.25, (2, 400))
    levels = np.array([0.1, 0.5, 0.9])
    q = pool.quantiles_at(history, np.arange(1, 401), levels, 0.0, 1.0)
    w = pool.weights(2, levels)  # (n, k, Q)
    assert (w[:, 1, 0] > 0.9).all()  # the 10 % quantile: wide
    assert (w[:, 1, 2] > 0.9).all()  # the 90 % quantile: wide
    assert (np.diff(q, axis=-1) >= 0).all()  # still quantiles
    covered = np.mean(
        (history[:, 201:] >= q[200:-1, :, 0, 0].T) & (history[:, 201:] <= q[200:-1, :, 0, 2].T)
    )
    assert 0.7 < covered < 0.9  # the 80 % interval covers about 80 %


def test_a_query_for_some_series_answers_with_their_weights_and_changes_nothing() -> None:
    # The planner's pool has learnt that "near" forecasts series 0-1 and "far" series 2-3.
    pool = PooledForecaster([Around("far", 3e6), Around("near", 1e6)], calibration_step=0.0)
    history = np.concatenate([_history(300), _history(300, level=3e6, seed=1)])
    pool.quantiles_at(history, np.arange(1, 301), LEVELS, 0.0, 1.0)
    assert pool.loss is not None
    loss, pending = pool.loss.copy(), dict(pool._pending)
    # A side query (GetForecast) for series 2-3 alone, further ahead than the planner asks.
    view = pool.for_queries(np.array([2, 3]))
    q = view.quantiles(history[2:], LEVELS, 0.0, 1.0, horizon=8)
    np.testing.assert_allclose(q[:, :, 1], 3e6, rtol=0.02)  # the weights of rows 2-3: "far"
    np.testing.assert_array_equal(pool.loss, loss)  # nothing learnt, nothing reset
    assert pool._pending.keys() == pending.keys()
    # A query on rows the pool has never seen answers with the prior and is as harmless.
    fresh = pool.for_queries(np.array([7])).quantiles(history[:1], LEVELS, 0.0, 1.0)
    np.testing.assert_allclose(fresh[:, :, 1], 2e6)
    np.testing.assert_array_equal(pool.loss, loss)
    # Without the view, the same query would have wiped what the pool learnt.
    pool.quantiles(history[2:], LEVELS, 0.0, 1.0)
    assert pool.loss.shape[0] == 2
