"""Fine-tuning a checkpoint on a site's own history (``sliceai train --init``, ``serve --adapt``).

A checkpoint trained on the bundled scenarios meets traffic it has not seen at a site.
:func:`finetune_pipeline` adapts it: the ensemble that serves the traces' clock (the
``fast/`` one below ``config.fast_below_s``, else the main one) is trained further on the
site's series, the other is kept as it is. The recipe (:class:`FinetuneOptions`; its
values chosen on dev traces only, ``research/forecast/experiments.md``, "Fine-tuning on
a site"):

- every series is cut into a validation part and training parts
  (:func:`~sliceai.forecast.training.holdout.site_series`): one-hour blocks spread over
  the history, every 7th (15%), so that validation sees every hour of the day (the last
  15% of two days is a night, and stopping on it cost a bundled scenario 2% of CRPS on
  the next day); each part keeps as history what the model reads before it;
- each member network continues from its weights with AdamW at a learning rate of
  3e-4 (training's 2e-3; 1e-3 and 1e-4 scored lower on dev), cosine decay over the
  epochs, on windows cut and augmented as in training
  (:func:`~sliceai.forecast.training.data.sample_windows`) with the ensemble's own
  inputs (yesterday's window only at the clocks where it reads one);
- after every epoch the member's validation CRPS is measured on fixed windows
  (:func:`~sliceai.forecast.training.train.validation_crps`); the best weights, the
  starting ones included, are kept, and a member stops after ``patience`` epochs without
  a gain, so a member never leaves worse on validation than it came;
- the tuned networks join the ones they started from (``keep_original``): two days of a
  site teach the site's regular traffic but also that what they did not show does not
  happen; on a dev trace whose surgery slices started on the third day the tuned
  networks alone scored 8.9% worse there, the joined mixture 2.0%, for about a fifth of
  the gain elsewhere;
- the mixture's tail shape is refitted on the validation windows
  (:func:`~sliceai.forecast.training.calibration.fit_shape`).

``minutes`` bounds the wall time (the members share it; a member out of time keeps its
best weights so far). Training runs on ``device`` (the GPU when present with ``auto``),
under its own torch random state, so the caller's is left alone.

:func:`finetune_checkpoint` reads a checkpoint directory and writes one in the same
layout; the ensemble it did not tune is copied byte for byte. The fine-tune reports each
tuned ensemble's score on the validation part before and after
(:func:`~sliceai.forecast.training.holdout.validation_score`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import shutil
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

from sliceai.forecast.checkpoint import (
    CONFIG_FILE,
    FAST_DIR,
    WEIGHTS_FILE,
    checkpoint_dir,
    save_model,
)
from sliceai.forecast.errors import ForecastError
from sliceai.forecast.mixture import ForecastEnsemble, member_arrays, member_modules
from sliceai.forecast.model import ForecastModel
from sliceai.forecast.pipeline import ForecastPipeline, resolve_device
from sliceai.forecast.training.calibration import fit_shape, windows_to_tensors
from sliceai.forecast.training.data import Series, Windows, config_windows
from sliceai.forecast.training.holdout import site_series, validation_score
from sliceai.forecast.training.train import training_step, validation_crps
from sliceai.traffic import Trace

FloatArray = npt.NDArray[np.float64]

#: Which ensemble of a checkpoint is which (``FinetuneResult.ensembles`` keys).
MAIN, FAST = "main", "fast"
#: Share of the wall-time budget left for the tail fit and the scores after training.
RESERVE_FRACTION = 0.1


@dataclass(frozen=True)
class FinetuneOptions:
    """How to fine-tune (the defaults are the recipe chosen on dev traces)."""

    learning_rate: float = 3e-4
    weight_decay: float = 1e-4
    epochs: int = 12
    steps_per_epoch: int = 100
    batch_size: int = 256
    patience: int = 3
    #: The last fraction of every series that validates (early stopping, tail shape).
    validation_fraction: float = 0.15
    #: Which part validates: ``tail`` (the last ``validation_fraction`` of each series) or
    #: ``blocks`` (one-hour blocks spread over the history: :func:`validation_blocks`).
    validation: str = "blocks"
    validation_windows: int = 2048
    #: Of those, the first this many fit the tail shape (the grid search is the slow part).
    tail_windows: int = 512
    augment: bool = True
    #: The tuned networks join the ones they started from in the mixture (a site
    #: specialist beside the generalist: a surprise the site's history did not show, a
    #: session starting on a slice idle so far, stays in the forecast's range).
    keep_original: bool = True
    #: Learning rate at the last epoch as a fraction of ``learning_rate`` (cosine decay).
    final_lr_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"
    #: Wall-time budget in minutes (None: the epochs alone bound it).
    minutes: float | None = None
    progress: bool = True
    #: Score the ensemble before and after on the validation part (:func:`score_crps`).
    score: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.validation_fraction < 0.5:
            raise ForecastError(
                f"validation_fraction must be in (0, 0.5), got {self.validation_fraction!r}"
            )
        if self.validation not in ("tail", "blocks"):
            raise ForecastError(f"validation must be tail or blocks, got {self.validation!r}")
        if self.minutes is not None and not self.minutes > 0:
            raise ForecastError(f"minutes must be positive, got {self.minutes!r}")
        if self.epochs < 1 or self.steps_per_epoch < 1 or self.batch_size < 1:
            raise ForecastError("epochs, steps_per_epoch and batch_size must be at least 1")

    def learning_rate_at(self, epoch: int) -> float:
        """Cosine decay from ``learning_rate`` at epoch 0 to ``final_lr_fraction`` of it."""
        floor = self.final_lr_fraction
        half = (1.0 - floor) / 2.0
        return self.learning_rate * (floor + half + half * math.cos(math.pi * epoch / self.epochs))


@dataclass
class MemberResult:
    """One network: validation CRPS before and after, the epoch kept (0: the start)."""

    initial_val_crps: float
    best_val_crps: float
    best_epoch: int
    epochs_run: int
    steps: int


@dataclass
class EnsembleResult:
    """One tuned ensemble: its members, the refitted tail shape, the series it saw."""

    members: list[MemberResult]
    tail_shape: tuple[float, float]
    train_series: int
    validation_windows: int
    #: :func:`score_crps` of the ensemble before and after on the validation part of the
    #: traces (NaN when ``FinetuneOptions.score`` is off or nothing could be scored).
    validation_score_before: float = float("nan")
    validation_score_after: float = float("nan")


@dataclass
class FinetuneResult:
    """What a fine-tune did: the ensembles tuned (``main`` / ``fast``) and the wall time."""

    ensembles: dict[str, EnsembleResult] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """JSON-ready (stored in the checkpoint's metadata)."""
        return {
            "seconds": round(self.seconds, 1),
            **{k: asdict(v) for k, v in self.ensembles.items()},
        }


def clock_groups(pipeline: ForecastPipeline, traces: Sequence[Trace]) -> dict[str, list[Trace]]:
    """The traces each ensemble of ``pipeline`` serves: ``fast`` those below its
    ``fast_below_s`` (when it has a fast ensemble), ``main`` the rest."""
    groups: dict[str, list[Trace]] = {}
    for trace in traces:
        which = FAST if pipeline.at(trace.interval_s) is not pipeline else MAIN
        groups.setdefault(which, []).append(trace)
    return groups


def finetune_pipeline(
    pipeline: ForecastPipeline,
    traces: Sequence[Trace],
    options: FinetuneOptions | None = None,
    cancel: threading.Event | None = None,
) -> tuple[ForecastPipeline, FinetuneResult]:
    """A copy of ``pipeline`` with the ensemble(s) serving ``traces``' clocks fine-tuned on
    them (module docstring); the other ensemble is the same object. ``pipeline`` itself
    is not changed (it may go on forecasting meanwhile). Once ``cancel`` is set, training
    stops as when out of time (the members keep their best weights so far)."""
    opts = options or FinetuneOptions()
    if not traces:
        raise ForecastError("no traces to fine-tune on")
    if pipeline.quantize is not None:
        raise ForecastError("a quantized pipeline cannot be fine-tuned; load the fp32 one")
    started = time.monotonic()
    budget = None if opts.minutes is None else 60.0 * opts.minutes * (1.0 - RESERVE_FRACTION)
    training_end = None if budget is None else started + budget
    groups = clock_groups(pipeline, traces)
    total_members = sum(len(_part(pipeline, k).members) for k in groups)
    device = resolve_device(opts.device)
    bar = tqdm(
        total=total_members * opts.epochs * opts.steps_per_epoch,
        desc="fine-tune",
        unit="step",
        file=sys.stderr,
        disable=not opts.progress,
    )
    result = FinetuneResult()
    tuned: dict[str, ForecastModel | ForecastEnsemble] = {}
    done = 0
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), bar:
        for which in (MAIN, FAST):
            if which not in groups:
                continue
            part = _part(pipeline, which)
            model, ens_result = _finetune_ensemble(
                part,
                groups[which],
                opts,
                device,
                _Stop(training_end, cancel),
                bar,
                total_members - done,
            )
            done += len(part.members)
            tuned[which] = model
            result.ensembles[which] = ens_result
    out = _rebuilt(pipeline, tuned)
    if opts.score:
        split = (opts.validation_fraction, opts.validation)
        for which, ens in result.ensembles.items():
            ens.validation_score_before = validation_score(pipeline, groups[which], *split)
            ens.validation_score_after = validation_score(out, groups[which], *split)
    result.seconds = time.monotonic() - started
    return out, result


@dataclass(frozen=True)
class _Stop:
    """When training stops: at ``end`` (monotonic s; None: never) or once ``cancel`` is set."""

    end: float | None
    cancel: threading.Event | None

    def share(self, members_left: int) -> _Stop:
        """The next member's stop: the time left, shared by the members left."""
        if self.end is None:
            return self
        now = time.monotonic()
        return _Stop(now + (self.end - now) / max(1, members_left), self.cancel)

    def due(self) -> bool:
        if self.cancel is not None and self.cancel.is_set():
            return True
        return self.end is not None and time.monotonic() > self.end


def _part(pipeline: ForecastPipeline, which: str) -> ForecastPipeline:
    if which == FAST:
        assert pipeline.fast is not None
        return pipeline.fast
    return pipeline


def _rebuilt(
    pipeline: ForecastPipeline, tuned: dict[str, ForecastModel | ForecastEnsemble]
) -> ForecastPipeline:
    """``pipeline`` with the tuned models in place of its ensembles (the others shared)."""
    fast = pipeline.fast
    if FAST in tuned and fast is not None:  # tuned weights are saved in fp32
        fast = ForecastPipeline(tuned[FAST], pipeline.device, metadata=fast.metadata)
    return ForecastPipeline(
        tuned.get(MAIN, pipeline.model),
        pipeline.device,
        metadata=pipeline.metadata,
        fast=fast,
        half_weights=pipeline.half_weights and MAIN not in tuned,
    )


def _finetune_ensemble(
    before: ForecastPipeline,
    traces: Sequence[Trace],
    opts: FinetuneOptions,
    device: torch.device,
    stop: _Stop,
    bar: Any,
    members_left: int,
) -> tuple[ForecastModel | ForecastEnsemble, EnsembleResult]:
    model = copy.deepcopy(before.model).cpu()
    config = model.config
    train_series, val_series = site_series(
        traces, config, opts.validation_fraction, opts.validation
    )
    val_rng = np.random.default_rng([opts.seed, 10**6])
    val_windows = config_windows(
        val_series, opts.validation_windows, config, val_rng, augment=False
    )
    members: list[MemberResult] = []
    for k, net in enumerate(member_modules(model)):
        assert isinstance(net, ForecastModel)
        members.append(
            _finetune_member(
                net,
                train_series,
                val_windows,
                opts,
                device,
                stop.share(members_left - k),
                bar,
                k,
            )
        )
        net.cpu().eval()
    if opts.keep_original:
        model = _joined(model, before.model)
    a, b = _mixture_tail(model, _first(val_windows, opts.tail_windows))
    shaped = dataclasses.replace(model.config, tail_linear=a, tail_cubic=b)
    model.config = shaped
    for net in member_modules(model):
        assert isinstance(net, ForecastModel)
        net.config = shaped
    return model.eval(), EnsembleResult(members, (a, b), len(train_series), opts.validation_windows)


def _finetune_member(
    net: ForecastModel,
    train_series: Sequence[Series],
    val_windows: Windows,
    opts: FinetuneOptions,
    device: torch.device,
    stop: _Stop,
    bar: Any,
    index: int,
) -> MemberResult:
    """Train one network in place; it ends with its best weights by validation CRPS."""
    config = net.config
    net.to(device)
    initial = validation_crps(net, val_windows, device, seed=opts.seed)
    best, best_epoch, bad, steps, epochs_run = initial, 0, 0, 0, 0
    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    optimizer = torch.optim.AdamW(
        net.parameters(), lr=opts.learning_rate, weight_decay=opts.weight_decay
    )
    rng = np.random.default_rng([opts.seed, index])
    torch.manual_seed(opts.seed * 100_003 + index)
    for epoch in range(opts.epochs):
        for group in optimizer.param_groups:
            group["lr"] = opts.learning_rate_at(epoch)
        net.train()
        out_of_time = False
        for _ in range(opts.steps_per_epoch):
            if stop.due():
                out_of_time = True
                break
            batch = config_windows(train_series, opts.batch_size, config, rng, opts.augment)
            training_step(net, optimizer, batch, device, "fine-tuning diverged")
            steps += 1
            bar.update(1)
        epochs_run = epoch + 1
        val = validation_crps(net, val_windows, device, seed=opts.seed)
        if val < best - 1e-5:
            best, best_epoch, bad = val, epoch + 1, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            bad += 1
        bar.set_postfix(member=index + 1, val=f"{val:.4f}", start=f"{initial:.4f}")
        if bad >= opts.patience or out_of_time:
            break
    net.load_state_dict(best_state)
    return MemberResult(initial, best, best_epoch, epochs_run, steps)


def _joined(
    tuned: ForecastModel | ForecastEnsemble, original: ForecastModel | ForecastEnsemble
) -> ForecastEnsemble:
    """One ensemble of the tuned networks followed by the original ones (on the CPU)."""
    nets = [*member_modules(tuned), *member_modules(original)]
    joined = ForecastEnsemble(dataclasses.replace(tuned.config, members=len(nets)))
    for target, source in zip(joined.members, nets, strict=True):
        target.load_state_dict(source.state_dict())
    return joined.eval()


def _first(windows: Windows, n: int) -> Windows:
    seasonal = None if windows.seasonal is None else windows.seasonal[:n]
    return Windows(
        windows.context[:n],
        windows.target[:n],
        windows.start_time[:n],
        windows.interval_s[:n],
        seasonal,
    )


def _mixture_tail(model: ForecastModel | ForecastEnsemble, windows: Windows) -> tuple[float, float]:
    """The tail shape fitted to the members' mixture on ``windows`` (CPU)."""
    nets = member_modules(model)
    tensors, target = windows_to_tensors(windows, model.config, torch.device("cpu"))
    with torch.inference_mode():
        loc, std, p0 = member_arrays([net(*tensors) for net in nets])
    return fit_shape(loc, std, p0, target.double().cpu().numpy())


def finetune_checkpoint(
    init: str | Path | None,
    traces: Sequence[Trace],
    out: str | Path,
    options: FinetuneOptions | None = None,
    **metadata: Any,
) -> FinetuneResult:
    """Fine-tune the checkpoint ``init`` (None: the bundled one) on ``traces`` and write it
    to ``out`` in the same layout; the ensemble not tuned is copied byte for byte.
    Tuned weights are stored in fp32. ``metadata`` goes into the tuned ensembles' configs."""
    source = checkpoint_dir(init)
    target = Path(out)
    if target.exists() and target.resolve() == source.resolve():
        raise ForecastError(f"{target}: write the fine-tuned checkpoint to another directory")
    pipeline = ForecastPipeline.load(source, device="cpu")
    opts = options or FinetuneOptions()
    tuned, result = finetune_pipeline(pipeline, traces, opts)
    meta = {
        **metadata,
        "finetuned_from": str(init if init is not None else "default"),
        "finetune_options": asdict(opts),
        "finetune_result": result.summary(),
    }
    write_finetuned(source, tuned, target, set(result.ensembles), **meta)
    return result


def write_finetuned(
    source: Path, tuned: ForecastPipeline, out: Path, which: set[str], **metadata: Any
) -> None:
    """Write ``tuned`` to ``out``: the ensembles in ``which`` saved (fp32, with
    ``metadata``), the others copied from the checkpoint directory ``source``."""
    out.mkdir(parents=True, exist_ok=True)
    parts = [(MAIN, tuned, source, out)]
    if tuned.fast is not None:
        parts.append((FAST, tuned.fast, source / FAST_DIR, out / FAST_DIR))
    for name, part, src, dst in parts:
        if name in which:
            save_model(part.model, dst, half=False, **{**part.metadata, **metadata})
        else:
            dst.mkdir(parents=True, exist_ok=True)
            for f in (CONFIG_FILE, WEIGHTS_FILE):
                shutil.copyfile(src / f, dst / f)
