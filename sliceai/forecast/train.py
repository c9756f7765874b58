"""Training: robust likelihood + CRPS in log space, validation CRPS, early stopping.

The loss is the Gaussian-copula log-likelihood with far-off targets winsorised plus
the closed-form CRPS of each step's marginal (:func:`training_loss`); the learning
rate decays with a cosine over the epochs. After training, the marginal tail shape
is fitted to the interval coverage on the validation windows (:func:`fit_tail_shape`)
and stored in the config.

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
from sliceai.forecast.mixture import ForecastEnsemble, member_arrays, mixture_covered
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


def _abs_moment(z: torch.Tensor) -> torch.Tensor:
    """``E|Z - z|`` for a standard normal ``Z``."""
    cdf = 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))
    pdf = torch.exp(-0.5 * z.square()) / math.sqrt(2.0 * math.pi)
    return z * (2.0 * cdf - 1.0) + 2.0 * pdf


def marginal_crps(dist: HorizonDistribution, target: torch.Tensor) -> torch.Tensor:
    """``(batch, horizon)`` closed-form CRPS of each step's marginal in log space: the
    Gaussian, or with ``zero_prob`` the mixture of a point mass at 0 and the Gaussian
    (``E|X - y| - E|X - X'| / 2`` with ``X = 0`` with probability ``p``)."""
    std = dist.marginal_std()
    gauss_to_y = std * _abs_moment((target - dist.loc) / std)  # E|G - y|
    gauss_pair = 2.0 * std * _INV_SQRT_PI  # E|G - G'|
    p = dist.zero_prob
    if p is None:
        return gauss_to_y - 0.5 * gauss_pair
    gauss_to_0 = std * _abs_moment(-dist.loc / std)  # E|G|
    to_y = p * target.abs() + (1.0 - p) * gauss_to_y
    pair = 2.0 * p * (1.0 - p) * gauss_to_0 + (1.0 - p).square() * gauss_pair
    return to_y - 0.5 * pair


def training_loss(dist: HorizonDistribution, target: torch.Tensor) -> torch.Tensor:
    """Winsorised joint negative log-likelihood per step plus the marginal CRPS.

    ``target``: ``(batch, horizon)`` in log space. The CRPS term trains every step's
    marginal robustly (and the idle probability, when there is one); the likelihood
    term also trains the correlation factors. With an idle probability, windows with
    an idle (exactly 0) step leave the likelihood out: the point mass explains those.
    """
    horizon = target.shape[1]
    std = dist.marginal_std()
    bound = WINSOR_SD * std.detach()
    near = torch.minimum(
        torch.maximum(target, dist.loc.detach() - bound), dist.loc.detach() + bound
    )
    nll_each = -dist.log_prob(near) / horizon
    if dist.zero_prob is None:
        nll = nll_each.mean()
    else:
        busy = (target != 0).all(dim=1).to(nll_each.dtype)
        nll = (nll_each * busy).sum() / busy.sum().clamp(min=1.0)
    loss: torch.Tensor = nll + CRPS_WEIGHT * marginal_crps(dist, target).mean()
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
    inputs: list[list[np.ndarray[Any, Any]]] = [[], [], [], [], [], []]
    lagged = w.seasonal if w.seasonal is not None else np.full((len(w.target), 0), np.nan)
    if lagged.shape[1] != config.seasonal_window:
        lagged = np.full((len(w.target), config.seasonal_window), np.nan)
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
                seasonal_window=config.seasonal_window,
                seasonal=lagged[sel],
            )
            for k, arr in enumerate(prep.model_inputs()):
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
        y = dist.switch_off(dist.sample(n_samples, gen), gen)
    # In units of each window's scale (y is log1p(x / scale)); each window's CRPS is
    # divided by max(its mean target, its context mean), so no window dominates.
    samples = np.expm1(np.minimum(y.double().cpu().numpy(), 60.0)).clip(min=0.0)
    truth = np.expm1(target.double().cpu().numpy())
    crps = crps_ensemble(np.moveaxis(samples, 1, -1), truth).mean(axis=1)
    return float(np.mean(crps / np.maximum(np.abs(truth).mean(axis=1), 1.0)))


#: Central interval coverages the tail shape is fitted to, and their weights (the 95%
#: interval is the one the issue holds the model to).
TAIL_FIT_LEVELS = (0.8, 0.9, 0.95, 0.98, 0.99)
TAIL_FIT_WEIGHTS = (1.0, 1.0, 3.0, 1.0, 1.0)


def interval_coverage(
    dist: HorizonDistribution, target: torch.Tensor, coverage: float, a: float, b: float
) -> float:
    """Fraction of ``target`` (log space) inside the central ``coverage`` interval of the
    marginals with the tail shape ``a z + b z^3``, counted as the evaluation counts it in
    bit/s: bounds below 0 are 0, so an idle truth under an interval reaching 0 is inside."""
    return float(np.mean(_covered(_interval_parts(dist, target, coverage), a, b)))


def _interval_parts(
    dist: HorizonDistribution, target: torch.Tensor, coverage: float
) -> tuple[np.ndarray[Any, Any], ...]:
    from scipy.special import ndtri

    loc = dist.loc.double().cpu().numpy()
    std = dist.marginal_std().double().cpu().numpy()
    p0 = np.zeros_like(loc) if dist.zero_prob is None else dist.zero_prob.double().cpu().numpy()
    y = target.double().cpu().numpy()
    lo_level, hi_level = (1.0 - coverage) / 2.0, (1.0 + coverage) / 2.0
    z_lo = ndtri(np.clip((lo_level - p0) / np.maximum(1.0 - p0, 1e-12), 1e-12, 1.0 - 1e-12))
    z_hi = ndtri(np.clip((hi_level - p0) / np.maximum(1.0 - p0, 1e-12), 1e-12, 1.0 - 1e-12))
    return loc, std, z_lo, z_hi, lo_level <= p0, hi_level <= p0, y


def _covered(parts: tuple[np.ndarray[Any, Any], ...], a: float, b: float) -> np.ndarray[Any, Any]:
    loc, std, z_lo, z_hi, lo_idle, hi_idle, y = parts
    lo = np.where(lo_idle, 0.0, np.maximum(loc + std * (a * z_lo + b * z_lo**3), 0.0))
    hi = np.where(hi_idle, 0.0, np.maximum(loc + std * (a * z_hi + b * z_hi**3), 0.0))
    covered: np.ndarray[Any, Any] = (y >= lo) & (y <= hi)
    return covered


def fit_tail_shape(
    model: ForecastModel, windows: Windows, device: torch.device
) -> tuple[float, float]:
    """``(a, b)`` so that the central intervals of the reshaped marginals ``a z + b z^3``
    cover :data:`TAIL_FIT_LEVELS` of the targets of ``windows`` (see
    :func:`interval_coverage`; weighted squared logit errors; grid search, ``0.6 <= a <=
    1.2``, ``0 <= b <= 0.12``: monotone and mild). The shape barely moves the CRPS; it
    sets how often the truth falls outside the intervals the solver is given."""
    model.eval()
    tensors, target = _to_tensors(windows, model.config, device)
    with torch.inference_mode():
        dist = model(*tensors)
    if target.numel() < 100:
        return 1.0, 0.0
    parts = [_interval_parts(dist, target, c) for c in TAIL_FIT_LEVELS]
    want = np.log(np.array(TAIL_FIT_LEVELS) / (1.0 - np.array(TAIL_FIT_LEVELS)))
    weights = np.array(TAIL_FIT_WEIGHTS)
    best, best_err = (1.0, 0.0), np.inf
    for a in np.linspace(0.6, 1.2, 25):
        for b in np.linspace(0.0, 0.12, 13):
            got = np.clip([np.mean(_covered(p, a, b)) for p in parts], 1e-4, 1.0 - 1e-4)
            err = float(np.sum(weights * (np.log(got / (1.0 - got)) - want) ** 2))
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
        model = _single(load_model(state_dir)[0], state_dir)
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
        val_series,
        opts.validation_windows,
        config.context_length,
        horizon,
        val_rng,
        augment=False,
        seasonal_window=config.seasonal_window,
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
                train_series,
                opts.batch_size,
                config.context_length,
                horizon,
                rng,
                seasonal_window=config.seasonal_window,
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
    loaded, metadata = load_model(directory)
    best = _single(loaded, directory)
    plain = dataclasses.replace(best.config, tail_linear=1.0, tail_cubic=0.0)
    best.config = plain
    a, b = fit_tail_shape(best.to(device), windows, device)
    best.config = dataclasses.replace(plain, tail_linear=a, tail_cubic=b)
    save_model(best, directory, **metadata)
    return a, b


def _single(model: ForecastModel | ForecastEnsemble, where: Path) -> ForecastModel:
    if not isinstance(model, ForecastModel):
        raise ForecastError(f"{where}: a seed ensemble; train and calibrate its members")
    return model


def fit_mixture_tail(
    model: ForecastEnsemble, windows: Windows, device: torch.device
) -> tuple[float, float]:
    """:func:`fit_tail_shape` for a seed ensemble: one ``(a, b)`` for all members, fitted
    to the interval coverage of their equal-weight mixture on ``windows``."""
    model.eval()
    tensors, target = _to_tensors(windows, model.config, device)
    with torch.inference_mode():
        loc, std, p0 = member_arrays(model(*tensors))
    y = target.double().cpu().numpy()
    want = np.log(np.array(TAIL_FIT_LEVELS) / (1.0 - np.array(TAIL_FIT_LEVELS)))
    weights = np.array(TAIL_FIT_WEIGHTS)
    best, best_err = (1.0, 0.0), np.inf
    for a in np.linspace(0.6, 1.2, 25):
        for b in np.linspace(0.0, 0.12, 13):
            got = [np.mean(mixture_covered(y, loc, std, p0, c, a, b)) for c in TAIL_FIT_LEVELS]
            got_c = np.clip(got, 1e-4, 1.0 - 1e-4)
            err = float(np.sum(weights * (np.log(got_c / (1.0 - got_c)) - want) ** 2))
            if err < best_err:
                best, best_err = (float(a), float(b)), err
    return best


def build_ensemble(
    member_dirs: Sequence[Path], out: Path, windows: Windows, **metadata: Any
) -> ForecastEnsemble:
    """Join single-network checkpoints of one shape into a seed ensemble in ``out``, with
    the tail shape fitted to the mixture's coverage on ``windows`` (CPU)."""
    members = [_single(load_model(d)[0], d) for d in member_dirs]
    plain = dataclasses.replace(members[0].config, tail_linear=1.0, tail_cubic=0.0)
    for d, m in zip(member_dirs, members, strict=True):
        shape = dataclasses.replace(m.config, tail_linear=1.0, tail_cubic=0.0)
        if shape != plain:
            raise ForecastError(f"{d}: config differs from {member_dirs[0]}'s")
    ensemble = ForecastEnsemble(dataclasses.replace(plain, members=len(members)))
    for target, source in zip(ensemble.members, members, strict=True):
        target.load_state_dict(source.state_dict())
    a, b = fit_mixture_tail(ensemble, windows, torch.device("cpu"))
    ensemble.config = dataclasses.replace(ensemble.config, tail_linear=a, tail_cubic=b)
    for member in ensemble.members:
        assert isinstance(member, ForecastModel)
        member.config = ensemble.config
    save_model(ensemble, out, **metadata)
    return ensemble


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


__all__ = ["TrainOptions", "TrainResult", "build_ensemble", "train", "validation_crps"]
