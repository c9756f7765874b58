"""Training: a tiny model learns a known distribution; resuming is exact; the learning-rate
schedule."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from forecast_configs import SMALL, train_options

from sliceai.forecast import ForecastPipeline
from sliceai.forecast.errors import ForecastError
from sliceai.forecast.training.data import Series
from sliceai.forecast.training.train import STATE_DIR, STATE_FILE, Counters, TrainOptions, train

CFG = SMALL
# Independent log-normal traffic: log(x / LEVEL) ~ N(MU, SIGMA).
MU, SIGMA, LEVEL = 0.7, 0.2, 1e6


def _iid_series(n_series: int, length: int, seed: int) -> list[Series]:
    rng = np.random.default_rng(seed)
    return [
        Series(f"s{k}", LEVEL * rng.lognormal(MU, SIGMA, size=length), 1.7e9, 60.0)
        for k in range(n_series)
    ]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_tiny_model_recovers_known_quantiles(tmp_path: Path) -> None:
    result = train(_iid_series(8, 3000, 0), _iid_series(2, 600, 1), tmp_path, CFG, train_options(4))
    assert result.best_epoch >= 1
    pipe = ForecastPipeline.load(tmp_path, device="cpu")
    ctx = np.stack([s.values[-32:] for s in _iid_series(64, 32, 2)])
    levels = np.array([0.1, 0.5, 0.9])
    q = pipe.quantiles(ctx, 4, levels, start_time=1.7e9)
    got = np.median(q.reshape(-1, 3), axis=0)
    from scipy.stats import norm

    want = LEVEL * np.exp(MU + SIGMA * norm.ppf(levels))
    np.testing.assert_allclose(got, want, rtol=0.1)


def test_resume_continues_exactly(tmp_path: Path) -> None:
    tr, va = _iid_series(4, 800, 0), _iid_series(2, 300, 1)
    full = train(tr, va, tmp_path / "full", CFG, train_options(2, patience=10))
    train(tr, va, tmp_path / "split", CFG, train_options(1, patience=10))
    resumed = train(tr, va, tmp_path / "split", CFG, train_options(2, patience=10), resume=True)
    assert resumed.epochs_run == 2
    assert [h["val_crps"] for h in resumed.history] == pytest.approx(
        [h["val_crps"] for h in full.history], rel=1e-6
    )
    a = ForecastPipeline.load(tmp_path / "full" / "train_state", device="cpu")
    b = ForecastPipeline.load(tmp_path / "split" / "train_state", device="cpu")
    for (name, pa), pb in zip(
        a.model.state_dict().items(), b.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(pa, pb, msg=name)


def test_a_resume_reads_the_counters_and_ignores_keys_of_other_versions(tmp_path: Path) -> None:
    tr, va = _iid_series(4, 800, 0), _iid_series(2, 300, 1)
    first = train(tr, va, tmp_path, CFG, train_options(1, patience=10))
    state = tmp_path / STATE_DIR / STATE_FILE
    counters = Counters.read(state)
    assert counters.epoch == first.epochs_run == 1
    assert counters.best_val == first.best_val_crps
    assert [h["val_crps"] for h in counters.history] == [first.best_val_crps]
    # A run saved while the weight average existed also counted its updates.
    state.write_text(json.dumps({**json.loads(state.read_text()), "average_updates": 40}))
    assert Counters.read(state) == counters
    resumed = train(tr, va, tmp_path, CFG, train_options(2, patience=10), resume=True)
    assert resumed.epochs_run == 2


def test_learning_rate_decays_by_cosine_to_the_final_fraction() -> None:
    opts = TrainOptions(epochs=10, learning_rate=1e-2, final_lr_fraction=0.05)
    rates = [opts.learning_rate_at(e) for e in range(11)]
    assert rates[0] == pytest.approx(1e-2)
    assert rates[5] == pytest.approx(1e-2 * (0.05 + 0.95 / 2))
    assert rates[10] == pytest.approx(5e-4)
    assert all(a > b for a, b in itertools.pairwise(rates))
    # The default keeps the recipe the earlier checkpoints were trained with.
    old = TrainOptions(epochs=60, learning_rate=2e-3)
    for e in range(60):
        assert old.learning_rate_at(e) == 2e-3 * (0.55 + 0.45 * np.cos(np.pi * e / 60))


def test_a_bad_final_learning_rate_fraction_is_rejected() -> None:
    with pytest.raises(ForecastError, match="final_lr_fraction"):
        TrainOptions(final_lr_fraction=0.0)


def test_tail_shape_brings_interval_coverage_to_nominal(tmp_path: Path) -> None:
    from sliceai.forecast.checkpoint import load_model
    from sliceai.forecast.training.calibration import (
        fit_tail_shape,
        interval_coverage,
        windows_to_tensors,
    )
    from sliceai.forecast.training.data import sample_windows

    # Heavy-tailed log noise (Student t, 3 degrees of freedom): a Gaussian is miscalibrated.
    rng = np.random.default_rng(5)
    series = [
        Series(f"t{k}", LEVEL * np.exp(0.2 * rng.standard_t(3, size=3000)), 1.7e9, 60.0)
        for k in range(8)
    ]
    train(series[:6], series[6:], tmp_path, CFG, train_options(3))
    model, _ = load_model(tmp_path)
    windows = sample_windows(series[6:], 512, 32, 4, np.random.default_rng(1), augment=False)
    a, b = fit_tail_shape(model, windows, torch.device("cpu"))
    tensors, target = windows_to_tensors(windows, model.config, torch.device("cpu"))
    with torch.inference_mode():
        dist = model(*tensors)
    fitted = interval_coverage(dist, target, 0.95, a, b)
    plain = interval_coverage(dist, target, 0.95, 1.0, 0.0)
    assert abs(fitted - 0.95) <= abs(plain - 0.95)
    assert abs(fitted - 0.95) < 0.015
