"""The model behind the Forecaster contract: the history it reads, batching, start times."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from sliceai.forecast.forecaster import MAX_HISTORY, ModelForecaster


class FakePipeline:
    """Stands in for ForecastPipeline: quantile q of step k is (the context's last observed
    value + its start time + k * 1e6) * q; it reads
    a day back plus 60 intervals, or its 256-interval context where that is too long."""

    def __init__(self) -> None:
        self.contexts: list[np.ndarray] = []
        self.starts: list[np.ndarray] = []

    def history_length(self, interval_s: float) -> int:
        return max(256, round(86400 / interval_s) + 60)

    def at(self, interval_s: float) -> SimpleNamespace:
        return SimpleNamespace(config=SimpleNamespace(context_length=256))

    def quantiles(self, context, horizon, levels, start_time=None, interval_s=60.0):  # type: ignore[no-untyped-def]
        self.contexts.append(np.asarray(context))
        self.starts.append(np.asarray(start_time))
        ctx = np.asarray(context, dtype=np.float64)
        last = np.where(np.isnan(ctx[:, -1]), 0.0, ctx[:, -1]) + np.asarray(start_time)
        steps = np.arange(horizon)[None, :, None] * 1e6
        return (last[:, None, None] + steps) * np.asarray(levels)[None, None, :]


def test_the_model_gets_the_history_its_config_asks_for() -> None:
    pipe = FakePipeline()
    forecaster = ModelForecaster(pipe)  # type: ignore[arg-type]
    history = np.arange(2 * 3000, dtype=np.float64).reshape(2, 3000)
    levels = np.array([0.5])
    forecaster.quantiles(history, levels, 0.0, 60.0)
    assert pipe.contexts[-1].shape == (2, 1500)  # a day at 60 s is 1,440 intervals
    assert pipe.contexts[-1][0, -1] == history[0, -1]  # the most recent intervals
    assert pipe.starts[-1].tolist() == [1500 * 60.0] * 2  # epoch s of the context's first
    forecaster.quantiles(history, levels, 0.0, 1.0)
    assert MAX_HISTORY < 86400 + 60
    assert pipe.contexts[-1].shape == (2, 256)  # a day at 1 s is out of reach: the context
    forecaster.quantiles(history[:, :100], levels, 0.0, 60.0)
    ctx = pipe.contexts[-1]
    assert ctx.shape == (2, 1500)  # what there is, left-padded as missing
    assert np.isnan(ctx[:, :1400]).all()
    np.testing.assert_array_equal(ctx[:, 1400:], history[:, :100])


def test_many_origins_give_what_one_origin_at_a_time_gives() -> None:
    pipe = FakePipeline()
    forecaster = ModelForecaster(pipe)  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    history = rng.uniform(0, 1e6, (4, 400))
    levels = np.array([0.1, 0.9])
    origins = np.array([1, 50, 399, 400])
    batch = forecaster.quantiles_at(history, origins, levels, 0.0, 10.0, horizon=2)
    assert batch.shape == (4, 4, 2, 2)
    for k, o in enumerate(origins):
        one = forecaster.quantiles(history[:, :o], levels, 0.0, 10.0, horizon=2)
        np.testing.assert_array_equal(batch[k], one)
        expected = history[:, o - 1] + (o - 256) * 10.0  # the last value, the window's start
        np.testing.assert_allclose(batch[k, :, 0, 1], expected * 0.9)
