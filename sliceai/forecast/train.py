"""Training: robust likelihood + CRPS in log space, validation CRPS, early stopping.

The loss is the Gaussian-copula log-likelihood with far-off targets winsorised plus
the closed-form CRPS of each step's marginal (:func:`training_loss`); the learning
rate decays with a cosine over the epochs. After training, the marginal tail shape
is fitted on the validation windows (:func:`fit_tail_shape`) and stored in the config.

Training is resumable: after every epoch the output directory holds the best
checkpoint so far (``config.json`` + ``model.safetensors``) and a ``train_state/``
folder with the last weights, the optimizer state and the counters. Every epoch
draws its windows and dropout masks from generators seeded with ``(seed, epoch)``,
so a resumed run continues exactly as an uninterrupted one would (on the CPU).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

from sliceai.forecast.config import ForecastConfig
from sliceai.forecast.data import Series, Windows, sample_windows
from sliceai.forecast.errors import ForecastError
from sliceai.forecast.features import prepare, to_log_space
from sliceai.forecast.metrics import crps_ensemble
from sliceai.forecast.model import ForecastModel, HorizonDistribution
from sliceai.forecast.pipeline import load_model, resolve_device, save_model

STATE_DIR = "train_state"
#: Targets further than this many marginal standard deviations from the forecast are
#: pulled in for the likelihood term (session onsets after an idle context are
#: unpredictable and would otherwise dominate the quadratic log-likelihood).
WINSOR_SD = 4.0
#: Weight of the per-step Gaussian CRPS (robust: grows linearly with the error).
CRPS_WEIGHT = 5.0
_INV_SQRT_PI = 1.0 / math.sqrt(math.pi)


def training_loss(dist: HorizonDistribution, target: torch.Tensor) -> torch.Tensor:
    """Winsorised joint negative log-likelihood per step plus the marginal Gaussian CRPS.

    ``target``: ``(batch, horizon)`` in log space. The CRPS term trains every step's
    marginal robustly; the likelihood term also trains the correlation factors.
    """
    horizon = target.shape[1]
    std = dist.marginal_std()
    bound = WINSOR_SD * std.detach()
    near = torch.minimum(
        torch.maximum(target, dist.loc.detach() - bound), dist.loc.detach() + bound
    )
    nll = -dist.log_prob(near).mean() / horizon
    z = (target - dist.loc) / std
    normal = torch.distributions.Normal(0.0, 1.0)
    cdf = normal.cdf(z)  # type: ignore[no-untyped-call]
    pdf = torch.exp(-0.5 * z.square()) / math.sqrt(2.0 * math.pi)
    crps = std * (z * (2.0 * cdf - 1.0) + 2.0 * pdf - _INV_SQRT_PI)
    loss: torch.Tensor = nll + CRPS_WEIGHT * crps.mean()
    return loss


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


@dataclass
class TrainResult:
    """Outcome: best validation CRPS (relative to the mean load) and the per-epoch history."""

    best_val_crps: float
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)


def _to_tensors(
    w: Windows, config: ForecastConfig, device: torch.device
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Model inputs and the log-space target ``(n, horizon)`` for a batch of windows."""
    horizon = w.target.shape[1]
    inputs: list[list[np.ndarray[Any, Any]]] = [[], [], [], []]
    scales = []
    targets = []
    # Windows may mix intervals and calendar availability; prepare() groups by both.
    for interval in np.unique(w.interval_s):
        for has_cal in (True, False):
            sel = (w.interval_s == interval) & (np.isfinite(w.start_time) == has_cal)
            if not sel.any():
                continue
            prep = prepare(
                w.context[sel],
                config.context_length,
                horizon,
                float(interval),
                w.start_time[sel] if has_cal else None,
            )
            for k, arr in enumerate(
                (prep.values, prep.mask, prep.series_features, prep.step_calendar)
            ):
                inputs[k].append(arr)
            scales.append(prep.scale)
            targets.append(to_log_space(w.target[sel], prep.scale))
    tensors = [torch.from_numpy(np.concatenate(parts)).to(device) for parts in inputs]
    target = torch.from_numpy(np.concatenate(targets).astype(np.float32)).to(device)
    return tensors, target


def validation_crps(
    model: ForecastModel,
    windows: Windows,
    device: torch.device,
    n_samples: int = 100,
    seed: int = 0,
) -> float:
    """Mean over windows of CRPS / max(mean target, context mean): scale-free, bounded."""
    model.eval()
    tensors, target = _to_tensors(windows, model.config, device)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    with torch.inference_mode():
        dist = model(*tensors)
        y = dist.sample(n_samples, gen)
    # In units of each window's scale (y is log1p(x / scale)); each window's CRPS is
    # divided by max(its mean target, its context mean), so no window dominates.
    samples = np.expm1(np.minimum(y.double().cpu().numpy(), 60.0)).clip(min=0.0)
    truth = np.expm1(target.double().cpu().numpy())
    crps = crps_ensemble(np.moveaxis(samples, 1, -1), truth).mean(axis=1)
    return float(np.mean(crps / np.maximum(np.abs(truth).mean(axis=1), 1.0)))


#: Coverage levels of |z| whose quantiles the tail shape is fitted to.
TAIL_FIT_LEVELS = (0.5, 0.8, 0.9, 0.95, 0.98, 0.99)


def fit_tail_shape(
    model: ForecastModel, windows: Windows, device: torch.device
) -> tuple[float, float]:
    """``(a, b)`` so that ``a z + b z^3`` of standard-normal quantiles matches the quantiles
    of the standardised log-space errors ``|y - loc| / std`` on ``windows`` (grid search,
    ``0.6 <= a <= 1.2``, ``0 <= b <= 0.08``: monotone and mild). Windows whose target is
    exactly 0 everywhere (idle series, where the clipping at 0 decides) are left out."""
    from scipy.special import ndtri

    model.eval()
    tensors, target = _to_tensors(windows, model.config, device)
    with torch.inference_mode():
        dist = model(*tensors)
        r = ((target - dist.loc) / dist.marginal_std()).abs().double().cpu().numpy()
    busy = (target != 0).any(dim=1).cpu().numpy()
    r = r[busy].reshape(-1)
    if r.size < 100:
        return 1.0, 0.0
    levels = np.array(TAIL_FIT_LEVELS)
    emp = np.quantile(r, levels)
    z = ndtri((1.0 + levels) / 2.0)
    # Bounded grid search on log ratios: a mild reshaping, never a degenerate one.
    best, best_err = (1.0, 0.0), np.inf
    for a in np.linspace(0.6, 1.2, 25):
        for b in np.linspace(0.0, 0.08, 17):
            err = float(np.sum(np.log((a * z + b * z**3) / emp) ** 2))
            if err < best_err:
                best, best_err = (float(a), float(b)), err
    return best


def train(
    train_series: Sequence[Series],
    val_series: Sequence[Series],
    out_dir: str | Path,
    config: ForecastConfig | None = None,
    options: TrainOptions | None = None,
    resume: bool = False,
    metadata: dict[str, Any] | None = None,
) -> TrainResult:
    """Train a model and write the best checkpoint (by validation CRPS) to ``out_dir``."""
    opts = options or TrainOptions()
    out = Path(out_dir)
    state_dir = out / STATE_DIR
    device = resolve_device(opts.device)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(opts.seed)

    counters: dict[str, Any] = {
        "epoch": 0,
        "best_val": float("inf"),
        "best_epoch": -1,
        "bad_epochs": 0,
        "history": [],
    }
    if resume and (state_dir / "state.json").is_file():
        model, _ = load_model(state_dir)
        config = model.config
        counters = json.loads((state_dir / "state.json").read_text())
    else:
        config = config or ForecastConfig()
        model = ForecastModel(config)
    model.to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=opts.learning_rate, weight_decay=opts.weight_decay
    )
    if resume and (state_dir / "optimizer.pt").is_file():
        optimizer.load_state_dict(
            torch.load(state_dir / "optimizer.pt", weights_only=True, map_location=device)
        )
    horizon = config.max_horizon

    val_rng = np.random.default_rng([opts.seed, 10**6])
    val_windows = sample_windows(
        val_series, opts.validation_windows, config.context_length, horizon, val_rng, augment=False
    )
    meta = {**(metadata or {}), "train_options": asdict(opts)}

    start_epoch = int(counters["epoch"])
    stopped_early = False
    for epoch in range(start_epoch, opts.epochs):
        if counters["bad_epochs"] >= opts.patience:
            stopped_early = True
            break
        rng = np.random.default_rng([opts.seed, epoch])
        # Cosine decay by epoch (a function of the epoch only, so resuming is exact).
        for group in optimizer.param_groups:
            group["lr"] = opts.learning_rate * (
                0.55 + 0.45 * math.cos(math.pi * epoch / opts.epochs)
            )
        torch.manual_seed(opts.seed * 100_003 + epoch)
        model.train()
        losses = []
        bar = tqdm(
            range(opts.steps_per_epoch),
            desc=f"epoch {epoch + 1}/{opts.epochs}",
            file=sys.stderr,
            disable=not opts.progress,
            leave=False,
        )
        for _ in bar:
            batch = sample_windows(
                train_series, opts.batch_size, config.context_length, horizon, rng
            )
            tensors, target = _to_tensors(batch, config, device)
            dist = model(*tensors)
            loss = training_loss(dist, target)
            if not torch.isfinite(loss):
                raise ForecastError(f"training diverged at epoch {epoch + 1} (loss {loss.item()})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            losses.append(float(loss.item()))
            bar.set_postfix(nll=f"{np.mean(losses[-20:]):.3f}")
        val = validation_crps(model, val_windows, device, seed=opts.seed)
        counters["history"].append(
            {"epoch": epoch + 1, "train_nll": float(np.mean(losses)), "val_crps": val}
        )
        improved = val < counters["best_val"] - 1e-5
        if improved:
            counters.update(best_val=val, best_epoch=epoch + 1, bad_epochs=0)
            save_model(model, out, val_crps=val, epoch=epoch + 1, **meta)
        else:
            counters["bad_epochs"] += 1
        counters["epoch"] = epoch + 1
        if opts.progress:
            mark = " *" if improved else ""
            nll = np.mean(losses)
            print(
                f"epoch {epoch + 1}: train nll {nll:.4f}, validation CRPS {val:.4f}{mark}",
                file=sys.stderr,
            )
        _save_state(model, optimizer, counters, state_dir)
    else:
        stopped_early = counters["bad_epochs"] >= opts.patience and counters["epoch"] < opts.epochs
    calibrate_checkpoint(out, val_windows, device)
    return TrainResult(
        best_val_crps=float(counters["best_val"]),
        best_epoch=int(counters["best_epoch"]),
        epochs_run=int(counters["epoch"]),
        stopped_early=stopped_early,
        history=list(counters["history"]),
    )


def calibrate_checkpoint(
    directory: Path, windows: Windows, device: torch.device
) -> tuple[float, float]:
    """Fit the tail shape of the checkpoint in ``directory`` on ``windows`` and save it."""
    best, metadata = load_model(directory)
    plain = dataclasses.replace(best.config, tail_linear=1.0, tail_cubic=0.0)
    best.config = plain
    a, b = fit_tail_shape(best.to(device), windows, device)
    best.config = dataclasses.replace(plain, tail_linear=a, tail_cubic=b)
    save_model(best, directory, **metadata)
    return a, b


def _save_state(
    model: ForecastModel,
    optimizer: torch.optim.Optimizer,
    counters: dict[str, Any],
    state_dir: Path,
) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    save_model(model, state_dir)
    torch.save(optimizer.state_dict(), state_dir / "optimizer.pt")
    (state_dir / "state.json").write_text(json.dumps(counters, indent=1) + "\n")


__all__ = ["TrainOptions", "TrainResult", "train", "validation_crps"]
