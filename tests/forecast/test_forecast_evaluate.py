"""``evaluate``: per-trace and per-slice scores, and the points below each quantile."""

from __future__ import annotations

import numpy as np
import pytest

from sliceai.forecast import ForecastPipeline
from sliceai.forecast.evaluate import MODEL, EvaluationOptions, evaluate, slice_table
from sliceai.traffic import Trace


def _trace(level: float, seed: int) -> Trace:
    rng = np.random.default_rng(seed)
    load = level * rng.lognormal(0, 0.3, size=(400, 1, 2))
    return Trace(1.7e9, 60.0, ("a",), load)


@pytest.fixture
def reports(tiny_pipeline: ForecastPipeline) -> list[dict[str, object]]:
    opts = EvaluationOptions(horizon=4, stride=40, n_samples=20, progress=False)
    rep = evaluate(tiny_pipeline, [_trace(1e6, 0), _trace(1e9, 1)], opts)
    rep.update(interval_s=60.0, days=0.3, traces=["one:1:0.3", "two:2:0.3"], model="tiny")
    return [rep]


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
    from sliceai.forecast.evaluate import PINBALL_LEVELS, _Scores

    levels = np.array(PINBALL_LEVELS)
    truth = np.array([[1.0, 2.0, 3.0, 4.0]])
    quantiles = np.broadcast_to(np.array([2.0, 3.0, 3.5, 10.0]), (1, 4, 4)).copy()
    s = _Scores()
    s.add(np.repeat(truth[..., None], 3, axis=-1), quantiles, truth, levels)
    assert s.summary()["below"] == {"0.5": 0.5, "0.9": 0.75, "0.99": 0.75, "0.999": 1.0}
