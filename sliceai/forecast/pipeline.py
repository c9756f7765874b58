"""The forecast pipeline: numpy in, numpy out; loads checkpoints
(:mod:`sliceai.forecast.checkpoint`) and runs batches."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from scipy.special import ndtri
from torch.ao.quantization import quantize_dynamic

from sliceai.forecast.checkpoint import (
    FAST_DIR,
    checkpoint_dir,
    load_model,
    save_model,
    stored_half,
)
from sliceai.forecast.config import ForecastConfig
from sliceai.forecast.errors import ForecastError
from sliceai.forecast.features import as_context, prepare
from sliceai.forecast.mixture import (
    ForecastEnsemble,
    member_arrays,
    member_modules,
    mixture_quantiles,
    split_samples,
)
from sliceai.forecast.model import ForecastModel, HorizonDistribution

#: Series per forward pass; bounds memory at ``BATCH * n_samples * horizon`` floats.
MAX_BATCH = 4096
#: Sample paths drawn to read quantiles off when the horizon exceeds ``max_horizon``.
QUANTILE_SAMPLES = 500


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when available else CPU; ``cuda`` without a GPU raises ForecastError."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ForecastError("device 'cuda' requested but no CUDA device is available")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise ForecastError(f"unknown device {name!r}; use auto, cpu or cuda")


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantization of the Linear layers (CPU inference only)."""
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao but still works.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor", category=UserWarning)
        quantized: torch.nn.Module = quantize_dynamic(  # type: ignore[no-untyped-call]
            model, {torch.nn.Linear}, dtype=torch.qint8
        )
    return quantized


class ForecastPipeline:
    """A loaded model (one network or a seed ensemble read as a mixture) on a device.

    Output contract: :meth:`sample` returns ``(batch, n_samples, horizon)`` and
    :meth:`quantiles` ``(batch, horizon, n_quantiles)``, both float32 numpy arrays
    on the CPU, in bit/s, never negative.

    With ``config.fast_below_s`` > 0 a second pipeline, ``fast`` (networks trained at the
    fast clocks), forecasts every call whose ``interval_s`` is below it (:meth:`at`).
    """

    def __init__(
        self,
        model: ForecastModel | ForecastEnsemble,
        device: str | torch.device = "cpu",
        quantize: str | None = None,
        metadata: dict[str, Any] | None = None,
        fast: ForecastPipeline | None = None,
        half_weights: bool = False,
    ) -> None:
        self.config = model.config
        #: Whether :meth:`save` stores the weights as fp16 (as the checkpoint it was loaded
        #: from did): the model computes in fp32 either way.
        self.half_weights = half_weights
        _check_fast(self.config, fast)
        self.fast = fast
        self.device = resolve_device(device)
        self.metadata = dict(metadata or {})
        model = model.eval()
        if quantize not in (None, "int8"):
            raise ForecastError(f"unknown quantization {quantize!r}; use int8 or none")
        if quantize == "int8":
            if self.device.type != "cpu":
                raise ForecastError(
                    "int8 dynamic quantization runs on the CPU only; use --device cpu"
                )
            model = quantize_int8(model)  # type: ignore[assignment]
        self.quantize = quantize
        self.model: ForecastModel | ForecastEnsemble = model.to(self.device)
        self.members = member_modules(self.model)

    # ------------------------------------------------------------------ I/O
    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        device: str | torch.device = "auto",
        quantize: str | None = None,
    ) -> ForecastPipeline:
        """Load a checkpoint directory (or its ``model.safetensors``); None = bundled default.

        Raises :class:`ForecastError` for a missing, corrupt or mismatched checkpoint.
        """
        model, metadata = load_model(path)
        fast = None
        if model.config.fast_below_s > 0:
            fast = cls.load(checkpoint_dir(path) / FAST_DIR, device=device, quantize=quantize)
        return cls(
            model,
            device=device,
            quantize=quantize,
            metadata=metadata,
            fast=fast,
            half_weights=stored_half(path),
        )

    def save(self, directory: str | Path, **metadata: Any) -> None:
        if self.quantize is not None:
            raise ForecastError("a quantized pipeline cannot be saved; save the fp32 model")
        save_model(self.model, directory, half=self.half_weights, **{**self.metadata, **metadata})
        if self.fast is not None:
            self.fast.save(Path(directory) / FAST_DIR)

    def at(self, interval_s: float) -> ForecastPipeline:
        """The pipeline that forecasts at ``interval_s``: :attr:`fast` below
        ``config.fast_below_s``, else this one."""
        if self.fast is not None and interval_s < self.config.fast_below_s:
            return self.fast
        return self

    def history_length(self, interval_s: float) -> int:
        """Intervals of history read at ``interval_s`` (see
        :meth:`ForecastConfig.history_length`)."""
        return self.at(interval_s).config.history_length(interval_s)

    # ------------------------------------------------------------ inference
    def distribution(
        self,
        context: npt.ArrayLike,
        horizon: int,
        start_time: npt.ArrayLike | None = None,
        interval_s: float = 60.0,
    ) -> tuple[HorizonDistribution, npt.NDArray[np.float64]]:
        """Log-space distribution (on the CPU) and ``(batch,)`` scale, horizon <= max_horizon.

        One network only: a seed ensemble's forecast is a mixture (see :meth:`distributions`).
        """
        if self.at(interval_s) is not self:
            return self.at(interval_s).distribution(context, horizon, start_time, interval_s)
        if len(self.members) != 1:
            raise ForecastError(
                f"this checkpoint is a mixture of {len(self.members)} members; use distributions()"
            )
        dists, scale = self.distributions(context, horizon, start_time, interval_s)
        return dists[0], scale

    def distributions(
        self,
        context: npt.ArrayLike,
        horizon: int,
        start_time: npt.ArrayLike | None = None,
        interval_s: float = 60.0,
    ) -> tuple[list[HorizonDistribution], npt.NDArray[np.float64]]:
        """Each member's log-space distribution (on the CPU; the forecast is their
        equal-weight mixture) and the ``(batch,)`` scale, horizon <= max_horizon."""
        if self.at(interval_s) is not self:
            return self.at(interval_s).distributions(context, horizon, start_time, interval_s)
        ctx = as_context(context)
        _check_horizon(horizon, self.config.max_horizon)
        starts = _as_starts(start_time, ctx.shape[0])
        parts: list[list[HorizonDistribution]] = []
        scales = []
        for first in range(0, ctx.shape[0], MAX_BATCH):
            part = slice(first, first + MAX_BATCH)
            dists, scale = self._forward(
                ctx[part], horizon, None if starts is None else starts[part], interval_s
            )
            parts.append(dists)
            scales.append(scale)
        out = [_concat([p[k] for p in parts]) for k in range(len(self.members))]
        return out, np.concatenate(scales)

    def sample(
        self,
        context: npt.ArrayLike,
        horizon: int,
        n_samples: int = 100,
        start_time: npt.ArrayLike | None = None,
        interval_s: float = 60.0,
        seed: int | None = None,
        scale_bps: npt.ArrayLike | None = None,
    ) -> npt.NDArray[np.float32]:
        """Joint sample paths ``(batch, n_samples, horizon)`` float32 bit/s on the CPU.

        ``context``: ``(batch, context_len)`` bit/s, NaN where missing (any length, even 0;
        the model reads the last ``config.history_length(interval_s)`` intervals).
        ``start_time``: ``(batch,)`` or scalar epoch s of the first context interval,
        None when unknown (the model then forecasts without calendar features).
        Horizons beyond ``config.max_horizon`` are generated block by block, each block
        conditioned on the sampled path so far. ``scale_bps``: ``(batch,)`` bit/s that
        replaces the context mean as each series' scale (for generation: the long-run
        mean keeps an idle stretch from fixing the scale at the 1 bit/s floor).
        """
        if self.at(interval_s) is not self:
            route = self.at(interval_s)
            return route.sample(
                context, horizon, n_samples, start_time, interval_s, seed, scale_bps
            )
        ctx = as_context(context)
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ForecastError(f"horizon must be a positive integer, got {horizon!r}")
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise ForecastError(f"n_samples must be a positive integer, got {n_samples!r}")
        starts = _as_starts(start_time, ctx.shape[0])
        scales = None
        if scale_bps is not None:
            scales = np.broadcast_to(np.asarray(scale_bps, dtype=np.float64), (ctx.shape[0],))
            if not np.all(np.isfinite(scales)) or np.any(scales < 0):
                raise ForecastError("scale_bps must be finite and non-negative")
        generator = torch.Generator(device=self.device)
        generator.manual_seed(int(seed) if seed is not None else int(torch.seed() % 2**63))
        out = np.empty((ctx.shape[0], n_samples, horizon), dtype=np.float32)
        rows = max(1, MAX_BATCH // max(1, n_samples // 8))
        for first in range(0, ctx.shape[0], rows):
            part = slice(first, first + rows)
            out[part] = self._sample_block_chain(
                ctx[part],
                horizon,
                n_samples,
                None if starts is None else starts[part],
                interval_s,
                generator,
                None if scales is None else scales[part],
            )
        return out

    def quantiles(
        self,
        context: npt.ArrayLike,
        horizon: int,
        levels: npt.ArrayLike = (0.1, 0.5, 0.9),
        start_time: npt.ArrayLike | None = None,
        interval_s: float = 60.0,
        seed: int | None = None,
    ) -> npt.NDArray[np.float32]:
        """Marginal quantiles ``(batch, horizon, n_quantiles)`` float32 bit/s on the CPU.

        Exact (from the Gaussian marginals, or a seed ensemble's mixture of them) up to
        ``max_horizon``; read off :data:`QUANTILE_SAMPLES` sample paths beyond it.
        """
        if self.at(interval_s) is not self:
            route = self.at(interval_s)
            return route.quantiles(context, horizon, levels, start_time, interval_s, seed)
        lv = np.asarray(levels, dtype=np.float64).reshape(-1)
        if lv.size == 0 or np.any(~(lv > 0) | ~(lv < 1)):
            raise ForecastError(
                f"quantile levels must lie strictly between 0 and 1, got {lv.tolist()}"
            )
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ForecastError(f"horizon must be a positive integer, got {horizon!r}")
        if horizon > self.config.max_horizon:
            paths = self.sample(context, horizon, QUANTILE_SAMPLES, start_time, interval_s, seed)
            read_off: npt.NDArray[np.float32] = np.moveaxis(np.quantile(paths, lv, axis=1), 0, -1)
            return read_off.astype(np.float32)
        dists, scale = self.distributions(context, horizon, start_time, interval_s)
        if len(dists) > 1:
            loc_k, std_k, p0_k = member_arrays(dists)
            a, b = self.config.tail_linear, self.config.tail_cubic
            y = mixture_quantiles(loc_k, std_k, p0_k, lv, a, b)
            mixed = np.expm1(np.minimum(y, 60.0)) * scale[:, None, None]
            return np.maximum(mixed, 0.0).astype(np.float32)
        dist = dists[0]
        loc = dist.loc.numpy()[..., None]
        std = dist.marginal_std().numpy()[..., None]
        if dist.zero_prob is None:
            z = self._shape(ndtri(lv)).astype(np.float32)
            y = (loc + std * z).astype(np.float64)  # (batch, horizon, Q)
        else:
            # Levels up to the idle probability are 0; the rest are the Gaussian's.
            p0 = dist.zero_prob.double().numpy()[..., None]
            rest = np.clip((lv - p0) / np.maximum(1.0 - p0, 1e-12), 1e-12, 1.0 - 1e-12)
            z = self._shape(ndtri(rest)).astype(np.float32)
            y = np.where(lv <= p0, 0.0, (loc + std * z).astype(np.float64))
        values = np.expm1(np.minimum(y, 60.0)) * scale[:, None, None]
        result: npt.NDArray[np.float32] = np.maximum(values, 0.0).astype(np.float32)
        return result

    # -------------------------------------------------------------- helpers
    def _shape(self, z: Any) -> Any:
        """The fitted marginal reshaping ``a z + b z^3`` (numpy or torch, any shape)."""
        return self.config.tail_linear * z + self.config.tail_cubic * z**3

    def _forward(
        self,
        ctx: npt.NDArray[np.float64],
        horizon: int,
        starts: npt.NDArray[np.float64] | None,
        interval_s: float,
        scales: npt.NDArray[np.float64] | None = None,
        members: Sequence[int] | None = None,
    ) -> tuple[list[HorizonDistribution], npt.NDArray[np.float64]]:
        """Each member's distribution (``members``: only those, by index) and the scale."""
        cfg = self.config
        w = cfg.seasonal_window
        # Below the config's clock the window stays unobserved, however long the history.
        lagged = None if cfg.seasonal_at(interval_s) else np.full((ctx.shape[0], w), np.nan)
        prep = prepare(ctx, cfg.context_length, horizon, interval_s, starts, scales, w, lagged)
        dev = self.device
        which = range(len(self.members)) if members is None else members
        with torch.inference_mode():
            inputs = [torch.from_numpy(a).to(dev) for a in prep.model_inputs()]
            dists: list[HorizonDistribution] = [self.members[k](*inputs) for k in which]
        return dists, prep.scale

    def _draw(
        self, dist: HorizonDistribution, n_samples: int, generator: torch.Generator
    ) -> torch.Tensor:
        """``(batch, n_samples, horizon)`` log-space paths of one member, tail-shaped."""
        draws = dist.sample(n_samples, generator)
        if self.config.tail_linear != 1.0 or self.config.tail_cubic != 0.0:
            std = dist.marginal_std().unsqueeze(1)
            loc = dist.loc.unsqueeze(1)
            draws = loc + std * self._shape((draws - loc) / std)
        return dist.switch_off(draws, generator)

    def _sample_block_chain(
        self,
        ctx: npt.NDArray[np.float64],
        horizon: int,
        n_samples: int,
        starts: npt.NDArray[np.float64] | None,
        interval_s: float,
        generator: torch.Generator,
        scales: npt.NDArray[np.float64] | None = None,
        member: int | None = None,
    ) -> npt.NDArray[np.float32]:
        """Paths ``(batch, n_samples, horizon)`` in bit/s: from the mixture, or from one
        ``member`` only (index)."""
        block = self.config.max_horizon
        if horizon <= block:
            which = None if member is None else [member]
            dists, scale = self._forward(ctx, horizon, starts, interval_s, scales, which)
            k = len(dists)
            with torch.inference_mode():
                counts = split_samples(n_samples, k)
                parts = [
                    self._draw(d, n, generator) for d, n in zip(dists, counts, strict=True) if n > 0
                ]
                draws = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
                if k > 1 and n_samples > 1:  # members' paths in random order
                    order = torch.randperm(n_samples, generator=generator, device=draws.device)
                    draws = draws[:, order]
                # Back to bit/s where the draws are (on a GPU this keeps the host's work
                # to one copy of the finished paths).
                s = torch.as_tensor(scale, dtype=torch.float64, device=draws.device)
                bps = torch.expm1(draws.double().clamp(max=60.0)) * s.view(-1, 1, 1)
                result: npt.NDArray[np.float32] = bps.clamp(min=0.0).float().cpu().numpy()
            return result
        # Longer horizons: one row per sample path, extended block by block (a seed
        # ensemble's path s stays with member s mod K throughout).
        batch = ctx.shape[0]
        extra = ctx.shape[1] - self.config.history_length(interval_s)
        if extra > 0:  # what the model never reads need not be repeated per path
            ctx = ctx[:, extra:]
            starts = None if starts is None else starts + extra * interval_s
        history = np.repeat(ctx, n_samples, axis=0)
        path_starts = None if starts is None else np.repeat(starts, n_samples)
        path_scales = None if scales is None else np.repeat(scales, n_samples)
        k = len(self.members) if member is None else 1
        member_of_row = np.tile(np.arange(n_samples) % k, batch)
        pieces: list[npt.NDArray[np.float32]] = []
        done = 0
        while done < horizon:
            step = min(block, horizon - done)
            piece = np.empty((history.shape[0], step), dtype=np.float32)
            for m in range(k):
                rows = np.flatnonzero(member_of_row == m)
                if rows.size == 0:
                    continue
                piece[rows] = self._sample_block_chain(
                    history[rows],
                    step,
                    1,
                    None if path_starts is None else path_starts[rows],
                    interval_s,
                    generator,
                    None if path_scales is None else path_scales[rows],
                    m if member is None else member,
                )[:, 0, :]
            pieces.append(piece)
            done += step
            history = np.concatenate([history, piece.astype(np.float64)], axis=1)
            drop = history.shape[1] - self.config.history_length(interval_s)
            if drop > 0:
                history = history[:, drop:]
                if path_starts is not None:
                    path_starts = path_starts + drop * interval_s
        paths = np.concatenate(pieces, axis=1)
        return paths.reshape(batch, n_samples, horizon)


def _concat(dists: Sequence[HorizonDistribution]) -> HorizonDistribution:
    """One member's batches (on the CPU, float32) as one distribution."""
    zero = [d.zero_prob.float().cpu() for d in dists if d.zero_prob is not None]
    return HorizonDistribution(
        torch.cat([d.loc.float().cpu() for d in dists]),
        torch.cat([d.sigma.float().cpu() for d in dists]),
        torch.cat([d.factors.float().cpu() for d in dists]),
        torch.cat(zero) if zero else None,
    )


def _check_fast(config: ForecastConfig, fast: ForecastPipeline | None) -> None:
    """A fast companion exactly when ``config.fast_below_s`` asks for one, itself without
    one, reading contexts of the same length and forecasting as far in one pass."""
    if fast is None:
        if config.fast_below_s > 0:
            raise ForecastError(
                f"config.fast_below_s is {config.fast_below_s:g}: needs the checkpoint for "
                f"the faster clocks (its {FAST_DIR}/ subdirectory)"
            )
        return
    if config.fast_below_s == 0:
        raise ForecastError("a fast-clock checkpoint needs config.fast_below_s > 0")
    same = ("context_length", "max_horizon")
    if fast.fast is not None or any(getattr(fast.config, f) != getattr(config, f) for f in same):
        raise ForecastError(
            "the fast-clock checkpoint must have the same context_length and max_horizon "
            "and no fast checkpoint of its own"
        )


def _check_horizon(horizon: int, max_horizon: int) -> None:
    if isinstance(horizon, bool) or not isinstance(horizon, int) or not 1 <= horizon <= max_horizon:
        raise ForecastError(f"horizon must be an integer in 1..{max_horizon}, got {horizon!r}")


def _as_starts(start_time: npt.ArrayLike | None, batch: int) -> npt.NDArray[np.float64] | None:
    if start_time is None:
        return None
    try:
        starts = np.broadcast_to(np.asarray(start_time, dtype=np.float64), (batch,)).copy()
    except ValueError:
        raise ForecastError(f"start_time must be a scalar or have shape ({batch},)") from None
    if not np.all(np.isfinite(starts)):
        raise ForecastError("start_time must be finite epoch seconds")
    return starts
