"""Held-out accuracy report: per-trace scores, the BENCHMARKS.md section and its survival."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sliceai.bench import Figure
from sliceai.bench.report import update_markdown
from sliceai.forecast import ForecastPipeline
from sliceai.forecast.accuracy import SECTION, render_markdown
from sliceai.forecast.evaluate import MODEL, EvaluationOptions, evaluate
from sliceai.forecast.scenarios import HELD_OUT, HELD_OUT_SEED_BASE, TRAINING_SCENARIOS
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


def test_section_survives_make_bench(reports: list[dict[str, object]], tmp_path: Path) -> None:
    from sliceai.bench.report import replace_sections

    md = tmp_path / "BENCHMARKS.md"
    text = render_markdown(reports)
    assert text.startswith(f"<!-- bench:{SECTION}:start -->")
    assert "one:1:0.3" in text
    assert "CRPS / best baseline" in text
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
