"""Training with a moving average of the weights, and the learning-rate schedule."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from forecast_configs import SMALL, train_options
from safetensors.torch import load_file

from sliceai.forecast.data import Series
from sliceai.forecast.errors import ForecastError
from sliceai.forecast.model import ForecastModel
from sliceai.forecast.train import AVERAGE_FILE, STATE_DIR, TrainOptions, WeightAverage, train


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _series(n_series: int, length: int, seed: int) -> list[Series]:
    rng = np.random.default_rng(seed)
    return [
        Series(f"s{k}", 1e6 * rng.lognormal(0.5, 0.3, size=length), 1.7e9, 60.0)
        for k in range(n_series)
    ]


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


@pytest.mark.parametrize(("field", "value"), [("final_lr_fraction", 0.0), ("weight_average", 1.0)])
def test_bad_schedule_options_are_rejected(field: str, value: float) -> None:
    with pytest.raises(ForecastError, match=field):
        TrainOptions(**{field: value})  # type: ignore[arg-type]


def test_weight_average_is_an_exponential_average_with_warm_up() -> None:
    torch.manual_seed(0)
    model = ForecastModel(SMALL)
    start = [p.detach().clone() for p in model.parameters()]
    avg = WeightAverage(model, decay=0.9)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    avg.update(model)  # warm-up: decay min(0.9, 2 / 11)
    d = 2.0 / 11.0
    for a, s in zip(avg.model.parameters(), start, strict=True):
        torch.testing.assert_close(a, s + (1.0 - d))
        assert not a.requires_grad
    for _ in range(200):
        avg.update(model)
    for a, s in zip(avg.model.parameters(), start, strict=True):
        torch.testing.assert_close(a, s + 1.0, atol=1e-4, rtol=0)


def test_checkpoint_holds_the_averaged_weights_and_resume_is_exact(tmp_path: Path) -> None:
    tr, va = _series(4, 800, 0), _series(2, 300, 1)
    opts = train_options(2, patience=10, weight_average=0.95)
    full = train(tr, va, tmp_path / "full", SMALL, opts)
    raw = load_file(tmp_path / "full" / STATE_DIR / "model.safetensors")
    averaged = load_file(tmp_path / "full" / STATE_DIR / AVERAGE_FILE)
    assert any(not torch.equal(raw[k], averaged[k]) for k in raw)
    assert full.best_epoch == 2  # so the checkpoint is the last epoch's average
    best = load_file(tmp_path / "full" / "model.safetensors")
    for k in raw:
        assert torch.equal(best[k], averaged[k]), k
    train(tr, va, tmp_path / "split", SMALL, train_options(1, patience=10, weight_average=0.95))
    resumed = train(tr, va, tmp_path / "split", SMALL, opts, resume=True)
    assert [h["val_crps"] for h in resumed.history] == [h["val_crps"] for h in full.history]
    again = load_file(tmp_path / "split" / STATE_DIR / AVERAGE_FILE)
    for k in averaged:
        assert torch.equal(averaged[k], again[k]), k
