"""``research.forecast.accuracy`` (``make evaluate``): the held-out traces and the
BENCHMARKS.md section."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from research.forecast.accuracy import SECTION, render_markdown
from research.forecast.traces import (
    DEV,
    DEV_SEED_BASE,
    HELD_OUT,
    HELD_OUT_SEED_BASE,
    TRAINING_SCENARIOS,
)
from sliceai.bench import Figure
from sliceai.bench.report import replace_sections, update_markdown
from sliceai.forecast import ForecastPipeline
from sliceai.forecast.evaluate import EvaluationOptions, evaluate
from sliceai.forecast.forecaster import ModelForecaster
from sliceai.planning.loading import pooled
from sliceai.traffic import Trace


@pytest.fixture
def reports(tiny_pipeline: ForecastPipeline) -> list[dict[str, object]]:
    load = 1e6 * np.random.default_rng(0).lognormal(0, 0.3, size=(400, 1, 2))
    opts = EvaluationOptions(horizon=4, stride=40, progress=False)
    forecaster = pooled(ModelForecaster(tiny_pipeline))
    rep = evaluate(forecaster, [Trace(1.7e9, 60.0, ("a",), load)], opts)
    rep.update(interval_s=60.0, days=0.3, traces=["one:1:0.3"], model="tiny")
    return [rep]


def test_section_survives_make_bench(reports: list[dict[str, object]], tmp_path: Path) -> None:
    md = tmp_path / "BENCHMARKS.md"
    text = render_markdown(reports)
    assert text.startswith(f"<!-- bench:{SECTION}:start -->")
    assert "one:1:0.3" in text
    assert "CRPS / best baseline" in text
    assert "`sliceai` per slice" in text
    assert "scored as `sliceai`: pool(model, ewma, rolling-quantile)" in text
    assert "CRPS from 100 quantiles (0.005, 0.015 .. 0.995" in text
    replace_sections(md, {SECTION: text})
    fig = Figure("forecast", "case", "median", 1.0, "ms")
    update_markdown(md, ["forecast"], [fig], "sliceai bench forecast")
    replace_sections(md, {SECTION: text})  # a rerun replaces, never duplicates
    out = md.read_text()
    assert out.count(f"<!-- bench:{SECTION}:start -->") == 1
    assert out.count("<!-- bench:forecast:start -->") == 1
    assert "## forecast accuracy (held-out)" in out


def test_held_out_seeds_and_scenarios_are_not_training_ones() -> None:
    for _name, seed in HELD_OUT:
        assert seed > HELD_OUT_SEED_BASE
    assert Path(HELD_OUT[-1][0]).is_file()
    assert Path(HELD_OUT[-1][0]).stem not in TRAINING_SCENARIOS
    assert [name for name, _ in DEV] == [name for name, _ in HELD_OUT]
    assert min(seed for _, seed in DEV) > DEV_SEED_BASE
