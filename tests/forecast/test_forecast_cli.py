"""``sliceai forecast``, ``generate``, ``evaluate`` and ``train`` end to end on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sliceai.cli import main
from sliceai.forecast.evaluate import readable_span
from sliceai.traffic import Trace
from sliceai.traffic.longcsv import read_long_csv, write_long_csv


@pytest.fixture
def trace_csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 700
    load = np.empty((n, 2, 2))
    load[:, 0] = 1e6 * rng.lognormal(0, 0.2, size=(n, 2))
    load[:, 1] = 0.0
    load[100:110, 0, 0] = np.nan
    path = tmp_path / "trace.csv"
    write_long_csv(Trace(1.7e9, 60.0, ("video", "alarms"), load), path)
    return path


def test_forecast_prints_table_and_plots(
    tiny_checkpoint: Path, trace_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "fan.png"
    code = main(
        [
            "forecast",
            str(trace_csv),
            "--horizon",
            "6",
            "--model",
            str(tiny_checkpoint),
            "--device",
            "cpu",
            "--plot",
            str(png),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "video/dl" in out
    assert "alarms/ul" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_generate_writes_a_readable_trace(
    tiny_checkpoint: Path, trace_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "synthetic.csv"
    code = main(
        [
            "generate",
            "--like",
            str(trace_csv),
            "--days",
            "0.1",
            "-o",
            str(out),
            "--model",
            str(tiny_checkpoint),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    synthetic = Trace.concat(read_long_csv(out))
    assert synthetic.slices == ("video", "alarms")
    assert synthetic.n_intervals == 144
    assert synthetic.start == pytest.approx(1.7e9 + 700 * 60.0)
    assert np.all(np.isfinite(synthetic.load_bps))
    assert synthetic.load_bps[:, 0].mean() > 1e4


def _evaluate(trace: Path, model: Path, *extra: str) -> list[str]:
    return [
        "evaluate",
        "--traces",
        str(trace),
        "--model",
        str(model),
        "--device",
        "cpu",
        "--horizon",
        "4",
        "--stride",
        "50",
        *extra,
    ]


def test_evaluate_scores_the_pooled_forecaster_by_default_and_names_it(
    tiny_checkpoint: Path, trace_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "eval.json"
    assert main(_evaluate(trace_csv, tiny_checkpoint, "--json", str(report))) == 0
    assert "scored: sliceai = pool(model, ewma, rolling-quantile)" in capsys.readouterr().out
    data = json.loads(report.read_text())
    assert data["forecaster"] == "pool(model, ewma, rolling-quantile)"
    assert data["model"] == str(tiny_checkpoint)
    assert set(data["methods"]) == {"sliceai", "seasonal-naive", "ewma", "rolling-quantile"}
    for m in data["methods"].values():
        assert set(m["coverage"]) == {"0.8", "0.95", "0.99"}
        assert set(m["pinball"]) == {"0.5", "0.9", "0.99", "0.999"}
        assert np.isfinite(m["crps"])
    assert data["n_series"] == 4
    # Every series from 300 (the rolling quantile in the pool reads 300), every 50 to 696.
    assert data["n_forecasts"] == 4 * len(range(300, 697, 50))
    assert "sessions" not in data  # the network and the baselines only


def test_evaluate_no_pool_scores_the_model_alone(
    tiny_checkpoint: Path, trace_csv: Path, tmp_path: Path
) -> None:
    report = tmp_path / "eval.json"
    assert main(_evaluate(trace_csv, tiny_checkpoint, "--no-pool", "--json", str(report))) == 0
    assert json.loads(report.read_text())["forecaster"] == "model"


def test_evaluate_on_a_trace_too_short_says_how_long_it_must_be(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    short = tmp_path / "short.csv"
    load = np.full((200, 1, 2), 1e6)
    write_long_csv(Trace(1.7e9, 60.0, ("video",), load), short)
    assert main(_evaluate(short, tiny_checkpoint)) == 2
    captured = capsys.readouterr()
    assert "has 200 intervals" in captured.err
    assert "needs at least 304 (300 of history and the horizon of 4: 5.07 h)" in captured.err
    assert "series" not in captured.out  # no table of NaN


def test_evaluate_has_no_session_assist_options(
    tiny_checkpoint: Path, trace_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["evaluate", "--traces", str(trace_csv), "--model", str(tiny_checkpoint)]
    for flag in ("--sessions", "--particles"):
        with pytest.raises(SystemExit):
            main([*common, flag, "on"])
        assert "unrecognized arguments" in capsys.readouterr().err


def test_bad_model_path_is_a_usage_error(
    trace_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["forecast", str(trace_csv), "--model", str(tmp_path / "missing")]) == 2
    assert "not a forecast checkpoint" in capsys.readouterr().err


@pytest.mark.slow  # trains the full-size network twice: tens of seconds
def test_train_cli_then_resume(trace_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    args = [
        "train",
        "--traces",
        str(trace_csv),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--steps",
        "3",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    assert (out / "model.safetensors").is_file()
    state = json.loads((out / "train_state" / "state.json").read_text())
    assert state["epoch"] == 1
    assert main([*args[:-4], "--epochs", "2", "--steps", "3", "--device", "cpu", "--resume"]) == 0
    assert json.loads((out / "train_state" / "state.json").read_text())["epoch"] == 2


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(76.0, "1.27 min"), (30.0, "30 s"), (18240.0, "5.07 h"), (3 * 86400.0, "3 days")],
)
def test_the_minimum_length_reads_in_a_unit_that_fits(seconds: float, text: str) -> None:
    assert readable_span(seconds) == text
