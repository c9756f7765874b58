"""``research.forecast.fitted_law``: the per-slice split of the session assist."""

from __future__ import annotations

import argparse

import numpy as np

from research.forecast import fitted_law as fl
from sliceai.forecast import ForecastPipeline


def test_the_split_scores_each_part_and_the_choice_takes_one_of_two(
    tiny_pipeline: ForecastPipeline,
) -> None:
    args = argparse.Namespace(interval=60.0, days=1.05, particles=20, window=90, seed=0)
    series = fl.score_trace("hospital", 2001, args, tiny_pipeline)
    assert {name for name, _ in series} >= {"consults", "surgery-video"}
    for _, scores in series:
        assert set(scores) == {"EWMA", "model", "filter", "pool", "chosen"}
        lengths = {len(v) for v in scores.values()}
        assert len(lengths) == 1
        taken = np.isclose(scores["chosen"], scores["pool"]) | np.isclose(
            scores["chosen"], scores["model"]
        )
        assert taken.all()
    text = fl.report(series)
    assert "| all " in text
    assert "consults" in text
