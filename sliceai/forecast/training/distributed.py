"""Training on several processes with torch DistributedDataParallel.

Every process draws the same batch from the same seeded generator, takes its own block
of rows (:class:`Shard`), draws the dropout masks for the whole batch and keeps its rows
(:class:`~sliceai.forecast.model.RowDropout`), and scales its loss so that the blocks'
losses add up to the batch's (:func:`~sliceai.forecast.training.loss.training_loss`
with ``batch_target``). DDP averages the gradients over the processes, so each step is
the step one process takes on the whole batch, up to the order of float additions: the
same seed gives the same model on 1 or N processes within float tolerance. Validation,
checkpoints and the tail-shape fit run on rank 0, which tells the others the
validation score so that they stop together.

Two ways in: :func:`launch` starts ``nproc`` local processes (``sliceai train --nproc N``:
gloo on the CPU, nccl on GPUs, one GPU per process), and :func:`from_environment` joins
the process group a launcher such as ``torchrun`` describes in ``RANK`` / ``WORLD_SIZE`` /
``MASTER_ADDR`` / ``MASTER_PORT``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.multiprocessing.spawn import ProcessException, start_processes

from sliceai.forecast.errors import ForecastError
from sliceai.forecast.model import RowDropout


@dataclass(frozen=True)
class Shard:
    """This process's place among ``world`` training processes."""

    rank: int
    world: int

    def __post_init__(self) -> None:
        if self.world < 1 or not 0 <= self.rank < self.world:
            raise ForecastError(f"bad shard: rank {self.rank} of {self.world}")

    def rows(self, batch_size: int) -> tuple[int, int]:
        """The ``[start, stop)`` rows of a batch that are this process's."""
        if batch_size % self.world:
            raise ForecastError(
                f"the batch size ({batch_size}) must be a multiple of the number of "
                f"processes ({self.world})"
            )
        block = batch_size // self.world
        return self.rank * block, (self.rank + 1) * block

    @property
    def leader(self) -> bool:
        return self.rank == 0


@contextmanager
def dropout_rows(model: torch.nn.Module, rows: tuple[int, int, int] | None) -> Iterator[None]:
    """Within the block, every :class:`RowDropout` of ``model`` keeps ``rows`` of the
    masks it draws for the whole batch."""
    layers = [m for m in model.modules() if isinstance(m, RowDropout)]
    for layer in layers:
        layer.rows = rows
    try:
        yield
    finally:
        for layer in layers:
            layer.rows = None


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def broadcast_float(value: float, shard: Shard | None) -> float:
    """Rank 0's ``value`` on every process (``value`` itself on one process)."""
    if shard is None or shard.world == 1:
        return value
    box: list[Any] = [value]
    dist.broadcast_object_list(box, src=0)
    return float(box[0])


def barrier(shard: Shard | None) -> None:
    if shard is not None and shard.world > 1:
        dist.barrier()


def from_environment() -> Shard | None:
    """The shard a launcher (``torchrun``) described in the environment, joining its
    process group; None when the environment names no group of more than one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    rank = int(os.environ["RANK"])
    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)))
        dist.init_process_group("nccl" if cuda else "gloo")
    return Shard(rank, world)


def launch(
    nproc: int, target: Callable[..., Any], *args: Any, device: str = "cpu", **kwargs: Any
) -> None:
    """Run ``target(shard, *args, **kwargs)`` on ``nproc`` local processes joined in one process
    group (loopback), each with an equal share of the CPU threads (or its own GPU with
    ``device`` cuda), and wait for all; a process that fails fails the launch.
    ``target`` must be importable (a module-level function): the processes are spawned."""
    if nproc < 1:
        raise ForecastError(f"--nproc must be at least 1, got {nproc}")
    if device.startswith("cuda") and torch.cuda.device_count() < nproc:
        raise ForecastError(
            f"--nproc {nproc} on cuda needs {nproc} GPUs, found {torch.cuda.device_count()}"
        )
    port = _free_port()
    threads = max(1, (os.cpu_count() or 1) // nproc)
    try:
        start_processes(  # type: ignore[no-untyped-call]
            _worker,
            args=(nproc, port, threads, device, target, args, kwargs),
            nprocs=nproc,
            join=True,
            start_method="spawn",
        )
    except ProcessException as exc:  # the failed process's traceback is in the message
        raise ForecastError(f"a training process failed: {exc}") from None


def _worker(
    rank: int,
    world: int,
    port: int,
    threads: int,
    device: str,
    target: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    torch.set_num_threads(threads)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(rank)
    dist.init_process_group(
        "nccl" if cuda else "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
    )
    try:
        target(Shard(rank, world), *args, **kwargs)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
