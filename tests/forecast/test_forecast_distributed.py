"""Training on several processes (DistributedDataParallel, gloo on loopback) trains the
model one process trains: the loss splits exactly over row blocks, dropout keeps the
whole batch's masks, and two real processes end with the same weights."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from forecast_configs import SMALL, train_options

from sliceai.forecast.checkpoint import load_model
from sliceai.forecast.commands import train_command
from sliceai.forecast.errors import ForecastError
from sliceai.forecast.model import ForecastModel, RowDropout
from sliceai.forecast.training.calibration import windows_to_tensors
from sliceai.forecast.training.data import Series, config_windows
from sliceai.forecast.training.distributed import Shard, dropout_rows, launch
from sliceai.forecast.training.loss import training_loss
from sliceai.forecast.training.train import STATE_DIR, STATE_FILE, Counters, train, train_shard
from sliceai.usage import UsageError


def _sessions(n_series: int, length: int, seed: int) -> list[Series]:
    """Log-normal load, idle (exactly 0) a fifth of the time: both loss terms matter."""
    rng = np.random.default_rng(seed)
    return [
        Series(
            f"s{k}", 1e6 * rng.lognormal(0.5, 0.4, length) * (rng.random(length) > 0.2), 1.7e9, 60.0
        )
        for k in range(n_series)
    ]


def test_row_dropout_blocks_are_the_whole_batch_mask() -> None:
    layer = RowDropout(0.3).train()
    x = torch.ones(8, 5)
    torch.manual_seed(4)
    whole = layer(x)
    parts = []
    for start, stop in ((0, 4), (4, 8)):
        torch.manual_seed(4)
        layer.rows = (start, stop, 8)
        parts.append(layer(x[start:stop]))
    torch.testing.assert_close(torch.cat(parts), whole)
    assert (whole == 0).any()
    assert (whole > 1).any()
    layer.eval()
    assert torch.equal(layer(x), x)


def test_the_blocks_losses_and_gradients_add_up_to_the_batch() -> None:
    torch.manual_seed(0)
    model = ForecastModel(SMALL).eval()  # no dropout: the blocks see the same network
    batch = config_windows(_sessions(4, 400, 1), 64, SMALL, np.random.default_rng(2))
    tensors, target = windows_to_tensors(batch, SMALL, torch.device("cpu"))
    assert (target == 0).any()  # the idle branch of the likelihood is exercised
    whole = training_loss(model(*tensors), target)
    grad = torch.autograd.grad(whole, list(model.parameters()), allow_unused=True)
    total = torch.zeros(())
    summed = [torch.zeros_like(p) for p in model.parameters()]
    for start, stop in ((0, 16), (16, 64)):  # unequal blocks: the sums still add up
        part = training_loss(model(*[t[start:stop] for t in tensors]), target[start:stop], target)
        total = total + part.detach()
        for acc, g in zip(
            summed,
            torch.autograd.grad(part, list(model.parameters()), allow_unused=True),
            strict=True,
        ):
            if g is not None:
                acc += g
    torch.testing.assert_close(total, whole.detach())
    for g, acc in zip(grad, summed, strict=True):
        if g is not None:
            torch.testing.assert_close(acc, g, rtol=1e-4, atol=1e-6)


def test_dropout_rows_is_undone_after_the_block() -> None:
    model = ForecastModel(SMALL)
    with dropout_rows(model, (0, 2, 4)):
        assert model.dropout.rows == (0, 2, 4)
    assert model.dropout.rows is None


def test_two_processes_train_the_model_one_process_trains(tmp_path: Path) -> None:
    tr, va = _sessions(6, 900, 0), _sessions(2, 400, 1)
    opts = dataclasses.replace(train_options(2, patience=10), steps_per_epoch=12)
    torch.set_num_threads(1)
    one = train(tr, va, tmp_path / "one", SMALL, opts)
    launch(2, train_shard, tr, va, tmp_path / "two", SMALL, opts)
    two = Counters.read(tmp_path / "two" / STATE_DIR / STATE_FILE)
    assert two.epoch == one.epochs_run == 2
    # The 1% target of the issue, and much tighter in fact: the same steps were taken.
    assert two.best_val == pytest.approx(one.best_val_crps, rel=1e-2)
    a, _ = load_model(tmp_path / "one" / STATE_DIR)
    b, _ = load_model(tmp_path / "two" / STATE_DIR)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-3, atol=1e-5, msg=name)
    # Only rank 0 wrote: one checkpoint, calibrated like the single-process one.
    assert (tmp_path / "two" / "config.json").is_file()
    assert not (tmp_path / "two" / "0").exists()


def test_a_batch_that_does_not_split_evenly_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ForecastError, match="multiple of the number of processes"):
        train(
            _sessions(2, 400, 0),
            _sessions(1, 300, 1),
            tmp_path,
            SMALL,
            train_options(1),
            shard=Shard(0, 3),
        )
    assert not any(tmp_path.iterdir())  # refused before anything was written
    with pytest.raises(ForecastError, match="bad shard"):
        Shard(2, 2)


@pytest.mark.parametrize(("nproc", "message"), [(0, "at least 1"), (3, "must divide")])
def test_the_command_refuses_a_bad_process_count(tmp_path: Path, nproc, message) -> None:
    args = argparse.Namespace(
        traces=[],
        scenario=["campus:1:0.5"],
        epochs=1,
        steps=1,
        seed=0,
        device="cpu",
        out=tmp_path / "m",
        resume=False,
        nproc=nproc,
    )
    with pytest.raises(UsageError, match=message):
        train_command(args)
    assert not (tmp_path / "m").exists()
