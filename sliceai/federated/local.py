"""What a site does with the global network (torch only, no flwr): train it further on its
own traces with the project's training step, and score it.

The federated model is one network of the bundled checkpoint: member ``member`` of the
ensemble that serves the sites' clock (the ``fast/`` one below ``config.fast_below_s``, as
:mod:`sliceai.forecast.training.finetune` picks it). Its parameters travel as a list of
float32 arrays in ``state_dict`` order (:func:`get_arrays`, :func:`set_arrays`); nothing
else of a site leaves it. Each round a site continues the global network with AdamW for
``local_steps`` batches of windows cut from its training part
(:func:`~sliceai.forecast.training.data.config_windows`, augmented as in training) and
:func:`~sliceai.forecast.training.train.training_step` (the training loss, gradients
clipped to norm 1), at the fine-tune's learning rate with a cosine decay over the rounds.
With ``proximal_mu`` > 0 (FedProx) the local objective adds ``mu / 2 * ||w - w_global||^2``,
which keeps a site's update near the global network when the sites' traffic differs.

The result (:func:`assemble`) is written as the fine-tune writes a site's model: the
federated network joined with the networks it started from (``keep_original``), the
other ensemble copied byte for byte; the tail shape stays the bundled one (no site's
windows reach the server to refit it).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from sliceai.forecast.checkpoint import checkpoint_dir
from sliceai.forecast.errors import ForecastError
from sliceai.forecast.mixture import ForecastEnsemble, member_modules
from sliceai.forecast.model import ForecastModel
from sliceai.forecast.pipeline import ForecastPipeline
from sliceai.forecast.training.data import Series, config_windows, series_from_traces
from sliceai.forecast.training.finetune import FAST, MAIN, write_finetuned
from sliceai.forecast.training.train import training_step
from sliceai.traffic import Trace, TraceError
from sliceai.traffic.longcsv import read_long_csv

Arrays = list[npt.NDArray[np.float32]]


@dataclass(frozen=True)
class LocalOptions:
    """How a site trains in a round (the learning rate is the fine-tune recipe's)."""

    local_steps: int = 30
    batch_size: int = 128
    learning_rate: float = 3e-4
    weight_decay: float = 1e-4
    final_lr_fraction: float = 0.1
    seed: int = 0
    threads: int = 1
    #: FedProx (Li et al. 2020): the local objective adds ``mu / 2 * ||w - w_global||^2``
    #: (0: plain FedAvg).
    proximal_mu: float = 0.0

    def learning_rate_at(self, server_round: int, rounds: int) -> float:
        """Cosine decay over the rounds (round 1 trains at ``learning_rate``)."""
        floor = self.final_lr_fraction
        half = (1.0 - floor) / 2.0
        phase = (server_round - 1) / max(1, rounds)
        return self.learning_rate * (floor + half + half * math.cos(math.pi * phase))


def read_traces(paths: Sequence[str | Path]) -> list[Trace]:
    """The site's traces (long CSV), one :class:`Trace` per file; ForecastError if unreadable."""
    out = []
    for p in paths:
        try:
            out.append(Trace.concat(read_long_csv(Path(p))))
        except (OSError, TraceError) as exc:
            raise ForecastError(f"{p}: {exc}") from None
    return out


def which_ensemble(pipeline: ForecastPipeline, interval_s: float) -> str:
    """``fast`` when ``pipeline`` forecasts ``interval_s`` with its fast ensemble, else ``main``."""
    return FAST if pipeline.at(interval_s) is not pipeline else MAIN


def ensemble(pipeline: ForecastPipeline, which: str) -> ForecastPipeline:
    if which == FAST:
        if pipeline.fast is None:
            raise ForecastError("the checkpoint has no fast ensemble")
        return pipeline.fast
    return pipeline


def network(pipeline: ForecastPipeline, which: str, member: int) -> ForecastModel:
    """A CPU copy of network ``member`` of ensemble ``which`` (``main`` / ``fast``)."""
    nets = member_modules(ensemble(pipeline, which).model)
    if not 0 <= member < len(nets):
        raise ForecastError(f"member {member}: the {which} ensemble has {len(nets)} networks")
    net = copy.deepcopy(nets[member]).cpu()
    assert isinstance(net, ForecastModel)
    return net


def get_arrays(net: torch.nn.Module) -> Arrays:
    """The network's parameters, float32 arrays in ``state_dict`` order."""
    return [v.detach().cpu().numpy().astype(np.float32) for v in net.state_dict().values()]


def parameter_shapes(net: torch.nn.Module) -> list[tuple[int, ...]]:
    return [tuple(v.shape) for v in net.state_dict().values()]


def set_arrays(net: torch.nn.Module, arrays: Sequence[npt.ArrayLike]) -> None:
    """Load ``arrays`` (``state_dict`` order) into ``net``; ForecastError on a shape mismatch."""
    state = net.state_dict()
    if len(arrays) != len(state):
        raise ForecastError(f"{len(arrays)} arrays for a network of {len(state)} tensors")
    new = {}
    for (name, old), arr in zip(state.items(), arrays, strict=True):
        t = torch.as_tensor(np.asarray(arr, dtype=np.float32))
        if tuple(t.shape) != tuple(old.shape):
            raise ForecastError(f"{name}: shape {tuple(t.shape)}, expected {tuple(old.shape)}")
        new[name] = t
    net.load_state_dict(new, strict=True)


class SiteTrainer:
    """A site's side of the federation: its traces stay in this object."""

    def __init__(
        self,
        traces: Sequence[Trace],
        pipeline: ForecastPipeline,
        member: int = 0,
        options: LocalOptions | None = None,
    ) -> None:
        if not traces:
            raise ForecastError("a site needs at least one trace")
        clocks = {which_ensemble(pipeline, t.interval_s) for t in traces}
        if len(clocks) != 1:
            raise ForecastError("a site's traces must all be served by the same ensemble")
        self.which = clocks.pop()
        self.options = options or LocalOptions()
        self.net = network(pipeline, self.which, member)
        self.series: list[Series] = series_from_traces(traces)
        self.intervals = int(sum(np.isfinite(t.load_bps).any(axis=(1, 2)).sum() for t in traces))

    def fit(self, arrays: Sequence[npt.ArrayLike], server_round: int, rounds: int) -> Arrays:
        """The global network trained ``local_steps`` batches on this site; the new arrays."""
        opts = self.options
        set_arrays(self.net, arrays)
        optimizer = torch.optim.AdamW(
            self.net.parameters(),
            lr=opts.learning_rate_at(server_round, rounds),
            weight_decay=opts.weight_decay,
        )
        rng = np.random.default_rng([opts.seed, server_round])
        threads = torch.get_num_threads()
        torch.set_num_threads(opts.threads)
        hooks = proximal_hooks(self.net, opts.proximal_mu)
        try:
            with torch.random.fork_rng():
                torch.manual_seed(opts.seed * 100_003 + server_round)
                self.net.train()
                for _ in range(opts.local_steps):
                    batch = config_windows(self.series, opts.batch_size, self.net.config, rng)
                    training_step(
                        self.net, optimizer, batch, torch.device("cpu"), "site training diverged"
                    )
        finally:
            for hook in hooks:
                hook.remove()
            torch.set_num_threads(threads)
            self.net.eval()
        return get_arrays(self.net)


def proximal_hooks(net: torch.nn.Module, mu: float) -> list[torch.utils.hooks.RemovableHandle]:
    """FedProx's proximal term on ``net``'s parameters as they are now (the global ones):
    each parameter's gradient gains ``mu * (w - w_global)``, the gradient of
    ``mu / 2 * ||w - w_global||^2``, before the training step clips and applies it.
    No hooks for ``mu == 0``; the caller removes them."""
    if mu < 0:
        raise ForecastError(f"proximal mu {mu}: must be at least 0")
    if mu == 0:
        return []
    hooks = []
    for param in net.parameters():
        if param.requires_grad:
            anchor = param.detach().clone()

            def pull(
                grad: torch.Tensor, w: torch.Tensor = param, a: torch.Tensor = anchor
            ) -> torch.Tensor:
                return grad + mu * (w.detach() - a)

            hooks.append(param.register_hook(pull))  # type: ignore[no-untyped-call]
    return hooks


def assemble(
    pipeline: ForecastPipeline, which: str, arrays: Sequence[npt.ArrayLike], member: int = 0
) -> ForecastPipeline:
    """``pipeline`` with the federated network joined to ensemble ``which`` (its other
    networks kept: the fine-tune's ``keep_original``); the other ensemble shared."""
    part = ensemble(pipeline, which)
    net = network(pipeline, which, member)
    set_arrays(net, arrays)
    nets = [net, *member_modules(part.model)]
    joined = ForecastEnsemble(dataclasses.replace(part.config, members=len(nets)))
    for target, source in zip(joined.members, nets, strict=True):
        target.load_state_dict(source.state_dict())
    joined.eval()
    if which == FAST:
        fast = ForecastPipeline(joined, pipeline.device, metadata=part.metadata)
        return ForecastPipeline(
            pipeline.model,
            pipeline.device,
            metadata=pipeline.metadata,
            fast=fast,
            half_weights=pipeline.half_weights,
        )
    return ForecastPipeline(joined, pipeline.device, metadata=pipeline.metadata, fast=pipeline.fast)


def write_checkpoint(
    init: str | Path | None,
    pipeline: ForecastPipeline,
    which: str,
    arrays: Sequence[npt.ArrayLike],
    out: str | Path,
    member: int = 0,
    **metadata: object,
) -> ForecastPipeline:
    """Write the federated checkpoint to ``out`` (layout of ``init``; the ensemble not
    federated copied byte for byte) and return it as a pipeline."""
    model = assemble(pipeline, which, arrays, member)
    write_finetuned(checkpoint_dir(init), model, Path(out), {which}, **metadata)
    return model
