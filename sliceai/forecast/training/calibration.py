"""Model inputs for training windows, and the marginal tail shape fitted to the interval
coverage (one network, or a seed ensemble's mixture)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sliceai.forecast.checkpoint import load_model, save_model
from sliceai.forecast.config import ForecastConfig
from sliceai.forecast.errors import ForecastError
from sliceai.forecast.features import prepare, to_log_space
from sliceai.forecast.metrics import cap_windows, crps_ensemble
from sliceai.forecast.mixture import (
    ForecastEnsemble,
    member_arrays,
    mixture_coverage,
    mixture_covered,
)
from sliceai.forecast.model import ForecastModel, HorizonDistribution
from sliceai.forecast.training.data import Windows


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


#: Central interval coverages the coverage fit aims at, and their weights (the 95%
#: interval is the one the issue holds the model to).
TAIL_FIT_LEVELS = (0.8, 0.9, 0.95, 0.98, 0.99)
TAIL_FIT_WEIGHTS = (1.0, 1.0, 3.0, 1.0, 1.0)
#: The shapes searched: ``a`` (body) and ``b`` (tails); monotone and mild.
TAIL_LINEAR_GRID = tuple(round(float(a), 6) for a in np.linspace(0.6, 1.2, 25))
TAIL_CUBIC_GRID = tuple(round(float(b), 6) for b in np.linspace(0.0, 0.12, 13))
#: Shapes whose 95% interval covers within this of 95% of the validation targets are
#: candidates; the candidate with the lowest CRPS is chosen.
TAIL_COVERAGE_TOLERANCE = 0.01
#: Draws per validation point for each candidate's CRPS (the same draws for all).
TAIL_CRPS_DRAWS = 64


def interval_coverage(
    dist: HorizonDistribution, target: torch.Tensor, coverage: float, a: float, b: float
) -> float:
    """Fraction of ``target`` (log space) inside the central ``coverage`` interval of the
    marginals with the tail shape ``a z + b z^3``, counted as the evaluation counts it in
    bit/s: bounds below 0 are 0, so an idle truth under an interval reaching 0 is inside."""
    y = target.double().cpu().numpy()
    return float(np.mean(mixture_covered(y, *member_arrays([dist]), coverage, a, b)))


def fit_shape(
    loc: np.ndarray[Any, Any],
    std: np.ndarray[Any, Any],
    p0: np.ndarray[Any, Any],
    y: np.ndarray[Any, Any],
    seed: int = 0,
) -> tuple[float, float]:
    """The tail shape ``(a, b)`` for members' log-space ``loc``, ``std``, ``p0`` ``(K,
    batch, horizon)`` (:func:`member_arrays`; K = 1 for one network) and targets ``y``
    ``(batch, horizon)``.

    Among the shapes of the grid whose 95% interval covers within
    :data:`TAIL_COVERAGE_TOLERANCE` of 95% of ``y``, the one with the lowest CRPS (in each
    window's scale units, divided by its mean target as validation scores). CRPS weighs
    every quantile level alike, so it sets the body; the coverage bound holds the tails.
    Without such a shape (too few targets, or a model far off): the one whose 80-99%
    intervals come nearest their coverage (weighted squared logit errors)."""
    if y.size < 100:
        return 1.0, 0.0
    want = np.log(np.array(TAIL_FIT_LEVELS) / (1.0 - np.array(TAIL_FIT_LEVELS)))
    weights = np.array(TAIL_FIT_WEIGHTS)
    i95 = TAIL_FIT_LEVELS.index(0.95)
    nearest, nearest_err = (1.0, 0.0), np.inf
    candidates = []
    for a in TAIL_LINEAR_GRID:
        for b in TAIL_CUBIC_GRID:
            got = mixture_coverage(y, loc, std, p0, TAIL_FIT_LEVELS, a, b)
            if abs(got[i95] - 0.95) <= TAIL_COVERAGE_TOLERANCE:
                candidates.append((a, b))
            got_c = np.clip(got, 1e-4, 1.0 - 1e-4)
            err = float(np.sum(weights * (np.log(got_c / (1.0 - got_c)) - want) ** 2))
            if err < nearest_err:
                nearest, nearest_err = (a, b), err
    if not candidates:
        return nearest
    draws = _ShapeDraws(loc, std, p0, y, seed)
    scores = [draws.crps(a, b) for a, b in candidates]
    return candidates[int(np.argmin(scores))]


class _ShapeDraws:
    """Fixed standard-normal draws, member choices and idle uniforms over ``y``'s points,
    so every candidate shape's CRPS comes from the same random numbers."""

    def __init__(
        self,
        loc: np.ndarray[Any, Any],
        std: np.ndarray[Any, Any],
        p0: np.ndarray[Any, Any],
        y: np.ndarray[Any, Any],
        seed: int,
    ) -> None:
        rng = np.random.default_rng(seed)
        shape = (*y.shape, TAIL_CRPS_DRAWS)
        member = np.arange(TAIL_CRPS_DRAWS) % loc.shape[0]  # draws split over the members
        self.loc = np.moveaxis(loc[member], 0, -1)
        self.std = np.moveaxis(std[member], 0, -1)
        self.idle = rng.random(shape) < np.moveaxis(p0[member], 0, -1)
        self.z = rng.standard_normal(shape)
        self.truth = np.expm1(y)
        self.norm = np.maximum(np.abs(self.truth).mean(axis=1), 1.0)

    def crps(self, a: float, b: float) -> float:
        y = self.loc + self.std * (a * self.z + b * self.z**3)
        x = np.where(self.idle, 0.0, np.expm1(np.minimum(y, 60.0)).clip(min=0.0))
        per_window = crps_ensemble(cap_windows(x, self.truth), self.truth).mean(axis=1)
        return float(np.mean(per_window / self.norm))


def fit_tail_shape(
    model: ForecastModel, windows: Windows, device: torch.device
) -> tuple[float, float]:
    """:func:`fit_shape` for one network on ``windows``. The shape barely moves the CRPS;
    it sets how often the truth falls outside the intervals the solver is given."""
    model.eval()
    tensors, target = windows_to_tensors(windows, model.config, device)
    with torch.inference_mode():
        dist = model(*tensors)
    return fit_shape(*member_arrays([dist]), target.double().cpu().numpy())


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
    """:func:`fit_shape` for a seed ensemble: one ``(a, b)`` for all members, fitted to
    their equal-weight mixture on ``windows``."""
    model.eval()
    tensors, target = windows_to_tensors(windows, model.config, device)
    with torch.inference_mode():
        loc, std, p0 = member_arrays(model(*tensors))
    return fit_shape(loc, std, p0, target.double().cpu().numpy())


def build_ensemble(
    member_dirs: Sequence[Path],
    out: Path,
    windows: Windows,
    seasonal_min_interval_s: float | None = None,
    max_log_std: float | None = None,
    fast_below_s: float | None = None,
    half: bool = False,
    **metadata: Any,
) -> ForecastEnsemble:
    """Join single-network checkpoints of one shape into a seed ensemble in ``out``, with
    the tail shape fitted to the mixture's coverage on ``windows`` (CPU);
    ``seasonal_min_interval_s`` (None: the members') sets the clocks at which the ensemble
    reads yesterday's window, and ``max_log_std`` (None: the members') the bound on each
    step's log-space spread, and ``fast_below_s`` (None: 0) the clocks handed to the
    ``fast/`` checkpoint beside it; all apply after the tail shape is fitted. With ``half``
    the weights are stored as fp16 (:func:`~sliceai.forecast.checkpoint.save_model`)."""
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
    if seasonal_min_interval_s is not None:
        ensemble.config = dataclasses.replace(
            ensemble.config, seasonal_min_interval_s=seasonal_min_interval_s
        )
    if max_log_std is not None:
        ensemble.config = dataclasses.replace(ensemble.config, max_log_std=max_log_std)
    if fast_below_s is not None:
        ensemble.config = dataclasses.replace(ensemble.config, fast_below_s=fast_below_s)
    for member in ensemble.members:
        assert isinstance(member, ForecastModel)
        member.config = ensemble.config
    save_model(ensemble, out, half=half, **metadata)
    return ensemble
