"""Model inputs for training windows, and the marginal tail shape fitted to the interval
coverage (one network, or a seed ensemble's mixture)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sliceai.forecast.config import ForecastConfig
from sliceai.forecast.data import Windows
from sliceai.forecast.errors import ForecastError
from sliceai.forecast.features import prepare, to_log_space
from sliceai.forecast.mixture import ForecastEnsemble, member_arrays, mixture_covered
from sliceai.forecast.model import ForecastModel, HorizonDistribution
from sliceai.forecast.pipeline import load_model, save_model


def windows_to_tensors(
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
    tensors, target = windows_to_tensors(windows, model.config, device)
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


def calibrate_checkpoint(
    directory: Path, windows: Windows, device: torch.device
) -> tuple[float, float]:
    """Fit the tail shape of the checkpoint in ``directory`` on ``windows`` and save it."""
    loaded, metadata = load_model(directory)
    best = single_network(loaded, directory)
    plain = dataclasses.replace(best.config, tail_linear=1.0, tail_cubic=0.0)
    best.config = plain
    a, b = fit_tail_shape(best.to(device), windows, device)
    best.config = dataclasses.replace(plain, tail_linear=a, tail_cubic=b)
    save_model(best, directory, **metadata)
    return a, b


def single_network(model: ForecastModel | ForecastEnsemble, where: Path) -> ForecastModel:
    if not isinstance(model, ForecastModel):
        raise ForecastError(f"{where}: a seed ensemble; train and calibrate its members")
    return model


def fit_mixture_tail(
    model: ForecastEnsemble, windows: Windows, device: torch.device
) -> tuple[float, float]:
    """:func:`fit_tail_shape` for a seed ensemble: one ``(a, b)`` for all members, fitted
    to the interval coverage of their equal-weight mixture on ``windows``."""
    model.eval()
    tensors, target = windows_to_tensors(windows, model.config, device)
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
    members = [single_network(load_model(d)[0], d) for d in member_dirs]
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
