"""Fine-tuning a checkpoint on a site's history: it learns the site, writes a checkpoint
that loads, and leaves the ensemble of the other clocks byte for byte as it was."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from forecast_configs import TINY

from sliceai.cli import main
from sliceai.forecast import ForecastPipeline
from sliceai.forecast.checkpoint import CONFIG_FILE, FAST_DIR, WEIGHTS_FILE, save_model
from sliceai.forecast.errors import ForecastError
from sliceai.forecast.mixture import member_modules
from sliceai.forecast.model import ForecastModel
from sliceai.forecast.training.finetune import (
    FAST,
    MAIN,
    FinetuneOptions,
    finetune_checkpoint,
    finetune_pipeline,
)
from sliceai.forecast.training.holdout import score_crps, site_series, validation_blocks
from sliceai.planning import load_forecaster
from sliceai.traffic import Trace
from sliceai.traffic.longcsv import write_long_csv

#: A few short epochs on the CPU, no progress bar.
QUICK = FinetuneOptions(
    learning_rate=1e-2,
    epochs=3,
    steps_per_epoch=25,
    batch_size=64,
    validation_windows=128,
    tail_windows=64,
    device="cpu",
    progress=False,
)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def site_trace(interval_s: float = 60.0, n: int = 1500, seed: int = 0) -> Trace:
    """Two slices whose rates switch between two levels every 4 intervals (a schedule the
    untrained model cannot know), with a little log-normal noise."""
    rng = np.random.default_rng(seed)
    k = np.arange(n)
    load = np.empty((n, 2, 2))
    for j in range(4):
        high = (k + j) % 8 >= 4
        load[:, j // 2, j % 2] = (
            1e6 * (j + 1) * np.where(high, 8.0, 1.0) * rng.lognormal(0, 0.05, n)
        )
    return Trace(1.7e9, interval_s, ("video", "vitals"), load)


def _values(trace: Trace) -> np.ndarray:
    return np.array(np.moveaxis(trace.load_bps, 0, -1).reshape(-1, trace.n_intervals))


@pytest.mark.slow
def test_finetuning_lowers_the_validation_loss_of_a_model_that_forecasts_badly(
    tiny_pipeline: ForecastPipeline,
) -> None:
    trace = site_trace()
    before = score_crps(tiny_pipeline, _values(trace), trace.start, 60.0, 1200)
    tuned, result = finetune_pipeline(tiny_pipeline, [trace], QUICK)
    (member,) = result.ensembles[MAIN].members
    assert member.best_val_crps < 0.5 * member.initial_val_crps
    assert member.best_epoch >= 1
    after = score_crps(tuned, _values(trace), trace.start, 60.0, 1200)
    assert after < 0.5 * before
    # the pipeline it started from is left as it was
    assert score_crps(tiny_pipeline, _values(trace), trace.start, 60.0, 1200) == before


def test_a_member_that_does_not_improve_keeps_its_weights(
    tiny_pipeline: ForecastPipeline,
) -> None:
    frozen = dataclasses.replace(QUICK, learning_rate=1e-12, epochs=2, patience=1)
    tuned, result = finetune_pipeline(tiny_pipeline, [site_trace()], frozen)
    (member,) = result.ensembles[MAIN].members
    assert member.best_epoch == 0
    assert member.best_val_crps == member.initial_val_crps
    for net in member_modules(tuned.model):
        for a, b in zip(net.parameters(), tiny_pipeline.model.parameters(), strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize("keep", [True, False])
def test_the_tuned_networks_join_the_originals_unless_told_not_to(
    tiny_pipeline: ForecastPipeline, keep: bool
) -> None:
    options = dataclasses.replace(QUICK, epochs=1, keep_original=keep)
    tuned, _ = finetune_pipeline(tiny_pipeline, [site_trace()], options)
    nets = member_modules(tuned.model)
    assert len(nets) == (2 if keep else 1)
    assert tuned.config.members == len(nets)
    original = tiny_pipeline.model.state_dict()
    assert not all(torch.equal(v, original[k]) for k, v in nets[0].state_dict().items())
    if keep:
        assert all(torch.equal(v, original[k]) for k, v in nets[1].state_dict().items())


def test_the_written_checkpoint_loads_and_forecasts(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "site"
    result = finetune_checkpoint(tiny_checkpoint, [site_trace()], out, QUICK, note="site")
    assert set(result.ensembles) == {MAIN}
    pipe = ForecastPipeline.load(out, device="cpu")
    assert pipe.metadata["finetuned_from"] == str(tiny_checkpoint)
    assert pipe.metadata["note"] == "site"
    assert (pipe.config.tail_linear, pipe.config.tail_cubic) == result.ensembles[MAIN].tail_shape
    q = pipe.quantiles(_values(site_trace())[:, -64:], 4, (0.1, 0.5, 0.9), interval_s=60.0)
    assert q.shape == (4, 4, 3)
    assert np.isfinite(q).all()
    history = _values(site_trace())
    forecaster = load_forecaster(str(out), device="cpu")
    got = forecaster.quantiles(history, np.array([0.1, 0.5, 0.9]), 1.7e9, 60.0, horizon=2)
    assert got.shape == (4, 2, 3)
    assert np.isfinite(got).all()


@pytest.fixture
def two_clock_checkpoint(tmp_path: Path) -> Path:
    """A tiny checkpoint whose clocks below 30 s go to a ``fast/`` network."""
    torch.manual_seed(1)
    out = tmp_path / "two-clocks"
    save_model(ForecastModel(dataclasses.replace(TINY, fast_below_s=30.0)), out)
    save_model(ForecastModel(TINY), out / FAST_DIR, half=True)
    return out


def _files(directory: Path) -> dict[str, bytes]:
    return {f: (directory / f).read_bytes() for f in (CONFIG_FILE, WEIGHTS_FILE)}


@pytest.mark.parametrize(("interval_s", "tuned", "kept"), [(10.0, FAST, MAIN), (60.0, MAIN, FAST)])
def test_only_the_ensemble_of_the_traces_clock_is_tuned_the_other_is_copied_byte_for_byte(
    two_clock_checkpoint: Path, tmp_path: Path, interval_s: float, tuned: str, kept: str
) -> None:
    out = tmp_path / "site"
    result = finetune_checkpoint(two_clock_checkpoint, [site_trace(interval_s)], out, QUICK)
    assert set(result.ensembles) == {tuned}
    where = {MAIN: Path(), FAST: Path(FAST_DIR)}
    assert _files(out / where[kept]) == _files(two_clock_checkpoint / where[kept])
    assert _files(out / where[tuned]) != _files(two_clock_checkpoint / where[tuned])
    pipe = ForecastPipeline.load(out, device="cpu")
    assert pipe.fast is not None
    assert pipe.config.fast_below_s == 30.0
    assert pipe.at(interval_s).metadata.get("finetuned_from") == str(two_clock_checkpoint)


@pytest.mark.slow
def test_traces_at_both_clocks_tune_both_ensembles(
    two_clock_checkpoint: Path, tmp_path: Path
) -> None:
    traces = [site_trace(10.0, seed=1), site_trace(60.0, seed=2)]
    result = finetune_checkpoint(two_clock_checkpoint, traces, tmp_path / "site", QUICK)
    assert set(result.ensembles) == {MAIN, FAST}


def test_refuses_to_overwrite_its_own_checkpoint(tiny_checkpoint: Path) -> None:
    with pytest.raises(ForecastError, match="another directory"):
        finetune_checkpoint(tiny_checkpoint, [site_trace()], tiny_checkpoint, QUICK)


def test_a_wall_time_budget_stops_training_early(tiny_pipeline: ForecastPipeline) -> None:
    budget = dataclasses.replace(QUICK, epochs=50, patience=50, minutes=0.02)
    _, result = finetune_pipeline(tiny_pipeline, [site_trace()], budget)
    (member,) = result.ensembles[MAIN].members
    assert member.steps < 50 * QUICK.steps_per_epoch
    assert result.seconds < 10.0


def test_score_crps_skips_idle_series_and_returns_nan_without_targets(
    tiny_pipeline: ForecastPipeline,
) -> None:
    values = _values(site_trace(n=400))
    values[1] = 0.0
    values[2] = np.nan
    score = score_crps(tiny_pipeline, values, 1.7e9, 60.0, 300, horizon=4, stride=8)
    only = score_crps(tiny_pipeline, values[[0, 3]], 1.7e9, 60.0, 300, horizon=4, stride=8)
    assert np.isfinite(score)
    assert score == pytest.approx(only, rel=0.3)
    assert np.isnan(score_crps(tiny_pipeline, values, 1.7e9, 60.0, 398, horizon=4))


@pytest.fixture
def site_csv(tmp_path: Path) -> Path:
    path = tmp_path / "site.csv"
    write_long_csv(site_trace(n=1200), path)
    return path


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--init", "/no/such/model"], "no such checkpoint directory"),
        (["--init", "default", "--resume"], "--resume continues a run"),
        (["--init", "default", "--scenario", "campus:1:1"], "give it with --traces"),
        (["--init", "default", "--minutes", "0"], "--minutes must be positive"),
    ],
)
def test_init_usage_errors_exit_2(
    site_csv: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    out = tmp_path / "out"
    code = main(["train", "--traces", str(site_csv), "--out", str(out), *extra])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_init_with_a_directory_that_is_no_checkpoint_exits_2(
    site_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["train", "--init", str(empty), "--traces", str(site_csv), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "not a forecast checkpoint" in capsys.readouterr().err


@pytest.mark.slow
def test_train_init_writes_a_checkpoint_that_model_loads(
    tiny_checkpoint: Path, site_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "site-model"
    argv = ["train", "--init", str(tiny_checkpoint), "--traces", str(site_csv), "--out", str(out)]
    code = main([*argv, "--device", "cpu", "--minutes", "0.1"])
    assert code == 0
    printed = capsys.readouterr().out
    assert f"checkpoint in {out}" in printed
    assert "main" in printed
    pipe = ForecastPipeline.load(out, device="cpu")
    assert pipe.metadata["finetuned_on"] == [str(site_csv)]
    assert pipe.metadata["finetune_options"]["minutes"] == 0.1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_finetuning_on_the_gpu_writes_a_checkpoint_the_cpu_loads(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "gpu"
    options = dataclasses.replace(QUICK, device="cuda")
    result = finetune_checkpoint(tiny_checkpoint, [site_trace()], out, options)
    (member,) = result.ensembles[MAIN].members
    assert member.best_val_crps < member.initial_val_crps
    pipe = ForecastPipeline.load(out, device="cpu")
    assert np.isfinite(pipe.quantiles(_values(site_trace())[:, -64:], 4, (0.5,))).all()


@pytest.mark.parametrize("how", ["tail", "blocks"])
def test_training_and_validation_targets_partition_each_series(how: str) -> None:
    trace = site_trace(interval_s=600.0, n=288 * 2)  # two days at 10 minutes
    train, val = site_series([trace], TINY, 0.15, how)
    for name in ("0:video/dl", "0:vitals/ul"):
        targets: list[int] = []
        for part in (p for p in train + val if p.name == name):
            first = round((part.start - trace.start) / 600.0) + part.first_target
            assert part.first_target <= TINY.history_length(600.0)
            targets += range(first, first + len(part.values) - part.first_target)
        assert sorted(targets) == list(range(trace.n_intervals))
    share = sum(len(p.values) - p.first_target for p in val) / (4 * trace.n_intervals)
    assert 0.13 <= share <= 0.17


def test_validation_blocks_fall_at_every_hour_of_the_day() -> None:
    blocks = validation_blocks(7 * 8640, 10.0, 0.15, "blocks")
    assert blocks[-1][1] == 7 * 8640
    hours = {start // 360 % 24 for start, _ in blocks}
    assert hours == set(range(24))
    assert validation_blocks(1000, 10.0, 0.15, "tail") == [(850, 1000)]
