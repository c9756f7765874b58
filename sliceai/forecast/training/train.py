"""Training: robust likelihood + CRPS in log space, validation CRPS, early stopping.

The loss is the Gaussian-copula log-likelihood with far-off targets winsorised plus
the closed-form CRPS of each step's marginal
(:func:`~sliceai.forecast.training.loss.training_loss`); the learning rate decays with a
cosine over the epochs to ``final_lr_fraction`` of its start. After training, the marginal
tail shape is fitted on the validation windows (the lowest CRPS among the shapes whose 95%
interval covers about 95%: :func:`~sliceai.forecast.training.calibration.fit_tail_shape`)
and stored in the config.

Training is resumable: after every epoch the output directory holds the best
checkpoint so far (``config.json`` + ``model.safetensors``) and a ``train_state/``
folder with the last weights, the optimizer state and the progress (:class:`Counters`).
Every epoch draws its windows and dropout masks from generators seeded with ``(seed, epoch)``,
so a resumed run continues exactly as an uninterrupted one would (on the CPU).

With ``shard`` the run is one of several processes of a DistributedDataParallel group
(:mod:`sliceai.forecast.training.distributed`): each takes its block of every batch, and
the model is the one a single process would train, within float tolerance.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

from sliceai.forecast.checkpoint import load_model, save_model
from sliceai.forecast.config import ForecastConfig
from sliceai.forecast.errors import ForecastError
from sliceai.forecast.metrics import cap_windows, crps_ensemble
from sliceai.forecast.model import ForecastModel
from sliceai.forecast.pipeline import resolve_device
from sliceai.forecast.training.calibration import (
    calibrate_checkpoint,
    single_network,
    windows_to_tensors,
)
from sliceai.forecast.training.data import Series, Windows, config_windows
from sliceai.forecast.training.distributed import (
    Shard,
    barrier,
    broadcast_float,
    dropout_rows,
)
from sliceai.forecast.training.loss import training_loss

STATE_DIR = "train_state"
STATE_FILE = "state.json"


@dataclass(frozen=True)
class TrainOptions:
    """How to train: ``epochs`` of ``steps_per_epoch`` batches of ``batch_size`` windows."""

    epochs: int = 30
    steps_per_epoch: int = 150
    batch_size: int = 256
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    patience: int = 5
    seed: int = 0
    device: str = "auto"
    validation_windows: int = 2048
    progress: bool = True
    #: Learning rate at the last epoch, as a fraction of ``learning_rate`` (cosine decay).
    final_lr_fraction: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 < self.final_lr_fraction <= 1.0:
            raise ForecastError(
                f"final_lr_fraction must be in (0, 1], got {self.final_lr_fraction!r}"
            )

    def learning_rate_at(self, epoch: int) -> float:
        """Cosine decay from ``learning_rate`` at epoch 0 towards ``final_lr_fraction`` of
        it at ``epochs`` (a function of the epoch only, so resuming is exact)."""
        floor = self.final_lr_fraction
        half = (1.0 - floor) / 2.0
        return self.learning_rate * (
            (floor + half) + half * math.cos(math.pi * epoch / self.epochs)
        )


@dataclass
class Counters:
    """Where a run stands after ``epoch`` epochs: the best validation CRPS so far and its
    epoch (-1: none yet), the epochs since it last improved, and the per-epoch history;
    saved as ``train_state/state.json`` so that a resumed run goes on from it."""

    epoch: int = 0
    best_val: float = float("inf")
    best_epoch: int = -1
    bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> Counters:
        """The progress saved in ``path`` (keys of other versions ignored)."""
        raw = json.loads(path.read_text())
        return cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1) + "\n")


@dataclass
class TrainResult:
    """Outcome: best validation CRPS (relative to the mean load) and the per-epoch history."""

    best_val_crps: float
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)


def validation_crps(
    model: ForecastModel,
    windows: Windows,
    device: torch.device,
    n_samples: int = 100,
    seed: int = 0,
) -> float:
    """Mean over windows of CRPS / max(mean target, context mean): scale-free, bounded."""
    model.eval()
    tensors, target = windows_to_tensors(windows, model.config, device)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    with torch.inference_mode():
        dist = model(*tensors)
        y = dist.switch_off(dist.sample(n_samples, gen), gen)
    # In units of each window's scale (y is log1p(x / scale)); each window's CRPS is
    # divided by max(its mean target, its context mean), so no window dominates.
    samples = np.expm1(np.minimum(y.double().cpu().numpy(), 60.0)).clip(min=0.0)
    truth = np.expm1(target.double().cpu().numpy())
    crps = crps_ensemble(cap_windows(np.moveaxis(samples, 1, -1), truth), truth).mean(axis=1)
    return float(np.mean(crps / np.maximum(np.abs(truth).mean(axis=1), 1.0)))


def train(
    train_series: Sequence[Series],
    val_series: Sequence[Series],
    out_dir: str | Path,
    config: ForecastConfig | None = None,
    options: TrainOptions | None = None,
    resume: bool = False,
    metadata: dict[str, Any] | None = None,
    shard: Shard | None = None,
) -> TrainResult:
    """Train a model and write the best checkpoint (by validation CRPS) to ``out_dir``;
    ``shard``: this process's place in a process group that is already initialised (only
    its rank 0 writes and prints)."""
    opts = options or TrainOptions()
    if shard is not None:
        shard.rows(opts.batch_size)  # refuse a batch that does not split evenly
    leader = shard is None or shard.leader
    out = Path(out_dir)
    state_dir = out / STATE_DIR
    device = resolve_device(opts.device)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(opts.seed)

    counters = Counters()
    if resume and (state_dir / STATE_FILE).is_file():
        model = single_network(load_model(state_dir)[0], state_dir)
        config = model.config
        counters = Counters.read(state_dir / STATE_FILE)
    else:
        config = config or ForecastConfig()
        model = ForecastModel(config)
    model.to(device)
    trained: torch.nn.Module = model
    if shard is not None and shard.world > 1:
        trained = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=opts.learning_rate, weight_decay=opts.weight_decay
    )
    if resume and (state_dir / "optimizer.pt").is_file():
        optimizer.load_state_dict(
            torch.load(state_dir / "optimizer.pt", weights_only=True, map_location=device)
        )
    val_rng = np.random.default_rng([opts.seed, 10**6])
    val_windows = config_windows(
        val_series, opts.validation_windows, config, val_rng, augment=False
    )
    meta = {**(metadata or {}), "train_options": asdict(opts)}

    stopped_early = False
    for epoch in range(counters.epoch, opts.epochs):
        if counters.bad_epochs >= opts.patience:
            stopped_early = True
            break
        rng = np.random.default_rng([opts.seed, epoch])
        for group in optimizer.param_groups:
            group["lr"] = opts.learning_rate_at(epoch)
        torch.manual_seed(opts.seed * 100_003 + epoch)
        model.train()
        losses = []
        bar = tqdm(
            range(opts.steps_per_epoch),
            desc=f"epoch {epoch + 1}/{opts.epochs}",
            file=sys.stderr,
            disable=not (opts.progress and leader),
            leave=False,
        )
        for _ in bar:
            batch = config_windows(train_series, opts.batch_size, config, rng)
            diverged = f"training diverged at epoch {epoch + 1}"
            losses.append(training_step(trained, optimizer, batch, device, diverged, shard))
            bar.set_postfix(nll=f"{np.mean(losses[-20:]):.3f}")
        val = validation_crps(model, val_windows, device, seed=opts.seed) if leader else 0.0
        val = broadcast_float(val, shard)
        counters.history.append(
            {"epoch": epoch + 1, "train_nll": float(np.mean(losses)), "val_crps": val}
        )
        improved = val < counters.best_val - 1e-5
        if improved:
            counters.best_val, counters.best_epoch, counters.bad_epochs = val, epoch + 1, 0
            if leader:
                save_model(model, out, val_crps=val, epoch=epoch + 1, **meta)
        else:
            counters.bad_epochs += 1
        counters.epoch = epoch + 1
        if opts.progress and leader:
            mark = " *" if improved else ""
            nll = np.mean(losses)
            print(
                f"epoch {epoch + 1}: train nll {nll:.4f}, validation CRPS {val:.4f}{mark}",
                file=sys.stderr,
            )
        if leader:
            _save_state(model, optimizer, counters, state_dir)
    else:
        stopped_early = counters.bad_epochs >= opts.patience and counters.epoch < opts.epochs
    if leader:
        calibrate_checkpoint(out, val_windows, device)
    barrier(shard)
    return TrainResult(
        best_val_crps=counters.best_val,
        best_epoch=counters.best_epoch,
        epochs_run=counters.epoch,
        stopped_early=stopped_early,
        history=list(counters.history),
    )


def train_shard(shard: Shard, *args: Any, **kwargs: Any) -> None:
    """:func:`train` as one process of a group (the target :func:`~sliceai.forecast.
    training.distributed.launch` runs); its result is in ``train_state/`` (:class:`Counters`)."""
    train(*args, **{**kwargs, "shard": shard})


def training_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Windows,
    device: torch.device,
    diverged: str = "training diverged",
    shard: Shard | None = None,
) -> float:
    """One optimizer step on ``batch`` (gradients clipped to norm 1); returns the loss
    (this process's part of it with ``shard``). ``model``: a :class:`ForecastModel`, or
    one wrapped in DistributedDataParallel. A loss that is not finite raises
    ForecastError (``diverged``) before any update."""
    ddp = isinstance(model, torch.nn.parallel.DistributedDataParallel)
    net: ForecastModel = model.module if ddp else model  # type: ignore[assignment]
    tensors, target = windows_to_tensors(batch, net.config, device)
    if shard is None or shard.world == 1:
        loss = training_loss(model(*tensors), target)
    else:
        start, stop = shard.rows(target.shape[0])
        mine = [t[start:stop] if t is not None else None for t in tensors]
        with dropout_rows(net, (start, stop, target.shape[0])):
            # DDP averages the gradients: world x each block's share sums to the batch's.
            loss = shard.world * training_loss(model(*mine), target[start:stop], target)
    if not torch.isfinite(loss):
        raise ForecastError(f"{diverged} (loss {loss.item()})")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return float(loss.item()) / (1 if shard is None else shard.world)


def _save_state(
    model: ForecastModel, optimizer: torch.optim.Optimizer, counters: Counters, state_dir: Path
) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    save_model(model, state_dir)
    torch.save(optimizer.state_dict(), state_dir / "optimizer.pt")
    counters.write(state_dir / STATE_FILE)
