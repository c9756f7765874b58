"""``evaluate``: every forecaster through ``quantiles_at``, per-trace and per-slice scores,
the points below each quantile, the quantile-grid CRPS, and traces too short to score."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtri
from scipy.stats import norm

from sliceai.forecast import ForecastPipeline
from sliceai.forecast import evaluate as evaluate_module
from sliceai.forecast.evaluate import (
    MODEL,
    PINBALL_LEVELS,
    EvaluationError,
    EvaluationOptions,
    _Scores,
    all_levels,
    evaluate,
    minimum_length,
    slice_table,
)
from sliceai.forecast.forecaster import ModelForecaster
from sliceai.planning.forecasters import FloatArray, Forecaster, IntArray
from sliceai.planning.loading import pooled
from sliceai.traffic import Trace

QUIET = EvaluationOptions(horizon=4, stride=40, progress=False)


def _trace(level: float, seed: int, n: int = 500) -> Trace:
    rng = np.random.default_rng(seed)
    load = level * rng.lognormal(0, 0.3, size=(n, 1, 2))
    return Trace(1.7e9, 60.0, ("a",), load)


class Gaussian(Forecaster):
    """``N(mean, std)`` at every origin and step (not clipped: the truth stays far above 0)."""

    name = "gaussian"

    def __init__(self, mean: float, std: float) -> None:
        self.mean, self.std = mean, std
        self.resets = 0
        self.calls: list[IntArray] = []

    def history_length(self, interval_s: float) -> int:
        return 10

    def reset(self) -> None:
        super().reset()
        self.resets += 1

    def quantiles_at(
        self,
        history: FloatArray,
        origins: IntArray,
        levels: FloatArray,
        start_time: float,
        interval_s: float,
        horizon: int = 1,
    ) -> FloatArray:
        self.calls.append(np.asarray(origins).copy())
        q = self.mean + self.std * ndtri(np.asarray(levels))
        return np.broadcast_to(q, (len(origins), history.shape[0], horizon, len(levels))).copy()


@pytest.fixture
def reports(tiny_pipeline: ForecastPipeline) -> list[dict[str, object]]:
    rep = evaluate(pooled(ModelForecaster(tiny_pipeline)), [_trace(1e6, 0), _trace(1e9, 1)], QUIET)
    rep.update(interval_s=60.0, days=0.3, traces=["one:1:0.3", "two:2:0.3"], model="tiny")
    return [rep]


def test_the_report_names_the_scored_forecaster(reports: list[dict[str, object]]) -> None:
    rep = reports[0]
    assert rep["forecaster"] == "pool(model, ewma, rolling-quantile)"
    assert rep["compared"] == ["seasonal-naive", "ewma", "rolling-quantile"]
    methods = rep["methods"]
    assert isinstance(methods, dict)
    assert list(methods) == [MODEL, "seasonal-naive", "ewma", "rolling-quantile"]


def test_per_trace_scores_average_to_the_whole(reports: list[dict[str, object]]) -> None:
    rep = reports[0]
    per_trace = rep["per_trace"]
    assert isinstance(per_trace, list)
    assert len(per_trace) == 2
    methods = rep["methods"]
    assert isinstance(methods, dict)
    for name in methods:
        # Both traces have two series each, so the series mean is the mean of the traces.
        mean = np.mean([t["crps"][name] for t in per_trace])
        assert mean == pytest.approx(methods[name]["crps"])
    for t in per_trace:
        best = min(v for k, v in t["crps"].items() if k != MODEL)
        assert t["crps_improvement"] == pytest.approx(1 - t["crps"][MODEL] / best)


def test_per_slice_scores_pool_the_traces_and_show_calibration(
    reports: list[dict[str, object]],
) -> None:
    rep = reports[0]
    per_slice = rep["per_slice"]
    assert isinstance(per_slice, dict)
    assert list(per_slice) == ["a"]  # one slice name in both traces
    a = per_slice["a"]
    methods = rep["methods"]
    assert isinstance(methods, dict)
    # All series are slice "a": its pooled coverage and calibration are the whole's.
    assert a["coverage"] == pytest.approx(methods[MODEL]["coverage"])
    assert a["below"] == pytest.approx(methods[MODEL]["below"])
    assert a["points"] == rep["n_forecasts"] * rep["horizon"]  # every scored point
    below = list(a["below"].values())
    assert below == sorted(below)  # a higher quantile never has fewer points below it
    best = min(v for k, v in a["crps"].items() if k != MODEL)
    assert a["crps_improvement"] == pytest.approx(1 - a["crps"][MODEL] / best)
    assert "<= q0.9" in slice_table(per_slice)


def test_points_below_a_quantile_are_counted_per_level() -> None:
    levels = all_levels()
    truth = np.array([[1.0, 2.0, 3.0, 4.0]])
    shape = np.interp(levels, [0.0, 0.5, 0.9, 0.99, 0.999, 1.0], [0, 2, 3, 3.5, 10, 11])
    quantiles = np.broadcast_to(shape, (1, 4, len(levels))).copy()
    s = _Scores()
    s.add(quantiles, truth, levels)
    assert s.summary()["below"] == {"0.5": 0.5, "0.9": 0.75, "0.99": 0.75, "0.999": 1.0}
    assert set(s.summary()["pinball"]) == {f"{p:g}" for p in PINBALL_LEVELS}


def test_a_gaussian_forecasts_crps_is_the_closed_form() -> None:
    mean, std = 10.0, 2.0
    load = np.random.default_rng(3).normal(mean, std, size=(300, 1, 2))
    trace = Trace(1.7e9, 60.0, ("a",), load)
    opts = EvaluationOptions(horizon=3, stride=1, progress=False)
    rep = evaluate(Gaussian(mean, std), [trace], opts, compared=[])
    expected = []
    for d in range(2):
        y = load[10:, 0, d]  # origins 10, 11, ... (its history), every target
        steps = np.stack([y[k : len(y) - 2 + k] for k in range(3)], axis=1)
        z = (steps - mean) / std
        crps = std * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / np.sqrt(np.pi))
        expected.append(crps.mean() / np.abs(steps).mean())
    assert rep["methods"][MODEL]["crps"] == pytest.approx(np.mean(expected), rel=1e-3)


def test_every_forecaster_is_reset_per_trace_and_asked_in_time_order() -> None:
    scored, other = Gaussian(5.0, 1.0), Gaussian(5.0, 2.0)
    other.name = "other"
    traces = [_trace(5.0, 0, 120), _trace(5.0, 1, 90)]
    evaluate(scored, traces, EvaluationOptions(horizon=2, stride=7, progress=False), [other])
    for f in (scored, other):
        assert f.resets == 2
        assert [c.tolist() for c in f.calls] == [
            list(range(10, 119, 7)),
            list(range(10, 89, 7)),
        ]


def test_a_trace_too_short_for_the_forecaster_names_the_length_it_needs() -> None:
    f = Gaussian(5.0, 1.0)
    assert minimum_length(f, 60.0, 4) == 14
    with pytest.raises(EvaluationError, match=r"short:1 has 13 intervals.*at least 14"):
        evaluate(f, [_trace(5.0, 0, 13)], QUIET, [], labels=["short:1"])
    evaluate(f, [_trace(5.0, 0, 14)], QUIET, [])  # just long enough


def test_a_trace_with_no_observed_target_is_an_error() -> None:
    trace = Trace(1.7e9, 60.0, ("a",), np.full((100, 1, 2), np.nan))
    with pytest.raises(EvaluationError, match="no forecast origin has a fully observed target"):
        evaluate(Gaussian(5.0, 1.0), [trace], QUIET, [])


def test_asking_for_the_origins_in_chunks_scores_the_same(
    tiny_pipeline: ForecastPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    trace = Trace(1.7e9, 60.0, ("a", "b"), 1e6 * rng.lognormal(0, 0.5, size=(600, 2, 2)))
    opts = EvaluationOptions(horizon=4, stride=3, progress=False)
    whole = evaluate(pooled(ModelForecaster(tiny_pipeline)), [trace], opts)
    monkeypatch.setattr(evaluate_module, "CHUNK_VALUES", 4 * 4 * len(all_levels()) * 5)
    chunked = evaluate(pooled(ModelForecaster(tiny_pipeline)), [trace], opts)  # 5 per call
    assert chunked["methods"] == whole["methods"]
