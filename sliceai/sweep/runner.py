"""The Ray side of ``sliceai sweep``: the unfinished cells on one Ray actor per core.

The one module of sliceai that imports Ray (``sliceai[scale]``); the command loads it
through :func:`sliceai.plugins.load`, so without the extra ``sliceai sweep`` says what to
install. Each worker is an actor (one CPU, its own process) holding a
:class:`sliceai.sweep.cells.CellRunner`: it imports sliceai and loads the model once and
reads each trace once for the cells it runs, where a task per cell paid the imports in
every new worker process and read its trace twice. The driver hands each worker its next
cell as it finishes one (the slow allocators first, so the last to finish are short),
so every cell is still its own Ray call with its own record, result file and progress
step. The workers write the cells' results under the output directory, which every Ray
node must see (a shared file system on a cluster). Without ``address`` Ray starts here
on loopback with ``num_cpus`` (default: the machine's cores) and stops at the end; with
one, the cluster's nodes need the same sliceai installed.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray
from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

from sliceai.sweep.cells import Cell, CellRunner, error_record, finished

#: Torch threads in each worker: one per core's worker, as the sequential run sets.
THREADS = 1


class SweepWorker(CellRunner):
    """A :class:`CellRunner` as a Ray actor, the model on ``threads`` torch threads."""

    def __init__(self, threads: int = THREADS) -> None:
        super().__init__()
        self.threads = threads
        # read by torch when a cell first imports it (the model's cells)
        os.environ["OMP_NUM_THREADS"] = str(threads)

    def run(self, cell: Cell, out: Path) -> dict[str, Any]:
        torch = sys.modules.get("torch")
        if torch is not None and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        return super().run(cell, out)

    def stats(self) -> dict[str, Any]:
        """:meth:`CellRunner.stats` and ``torch_threads`` (None where no cell needed torch)."""
        torch = sys.modules.get("torch")
        return {**super().stats(), "torch_threads": torch and torch.get_num_threads()}


def start_ray(address: str | None, num_cpus: int | None) -> bool:
    """Connect to (``address``) or start a local Ray unless one is up; whether we started it."""
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves the machine
    with warnings.catch_warnings():
        # a tip that tasks without GPUs will see them in later Rays; here they still do not
        warnings.filterwarnings("ignore", "Tip: In future versions of Ray", FutureWarning)
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(
                num_cpus=num_cpus or os.cpu_count() or 1,
                include_dashboard=False,
                log_to_driver=False,
                _node_ip_address="127.0.0.1",
            )
    return True


def _n_workers(num_cpus: int | None, n_cells: int) -> int:
    cpus = int(ray.cluster_resources().get("CPU", 1))
    return max(1, min(num_cpus or cpus, cpus, n_cells))


def run_sweep(
    cells: Sequence[Cell],
    out: Path,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    progress: bool = False,
    worker_stats: list[dict[str, Any]] | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Run every unfinished cell on Ray workers; (every cell's record in ``cells`` order,
    how many were finished already and skipped). A cell whose replay raised, or whose
    worker Ray lost (a new worker takes its place), has an error record; the others go
    on. ``num_cpus``: the workers (default: the cluster's CPUs). ``worker_stats``, when
    given, gets each worker's :meth:`CellRunner.stats` at the end."""
    out = Path(out).resolve()
    records: dict[int, dict[str, Any]] = {}
    todo = []
    for i, cell in enumerate(cells):
        done = finished(cell, out)
        if done is None:
            todo.append(i)
        else:
            records[i] = done
    skipped = len(cells) - len(todo)
    bar = tqdm(
        total=len(cells),
        initial=skipped,
        desc="sweep",
        unit="cell",
        file=sys.stderr,
        disable=not progress,
    )
    with bar:
        if todo:
            started = start_ray(address, num_cpus)
            try:
                n_workers = _n_workers(num_cpus, len(todo))
                where = f"the Ray cluster at {address}" if address else "a local Ray"
                bar.write(
                    f"sweep: {len(todo)} cell(s) on {n_workers} worker(s) of {where}", sys.stderr
                )
                _run(cells, todo, out, n_workers, records, bar, worker_stats)
            finally:
                if started:
                    ray.shutdown()
    return [records[i] for i in range(len(cells))], skipped


def _run(
    cells: Sequence[Cell],
    todo: list[int],
    out: Path,
    n_workers: int,
    records: dict[int, dict[str, Any]],
    bar: tqdm,
    worker_stats: list[dict[str, Any]] | None,
) -> None:
    """The cells ``todo`` on ``n_workers`` actors, each given its next cell as it finishes."""
    actor = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(SweepWorker)
    queue = deque(sorted(todo, key=lambda i: -cells[i].weight))  # slow cells first
    workers = [actor.remote(THREADS) for _ in range(n_workers)]
    pending: dict[Any, tuple[int, int]] = {}  # call -> (worker, cell)

    def give(w: int) -> None:
        if queue:
            i = queue.popleft()
            pending[workers[w].run.remote(cells[i], out)] = (w, i)

    try:
        for w in range(n_workers):
            give(w)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                w, i = pending.pop(ref)
                try:
                    records[i] = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    records[i] = error_record(cells[i], out, f"Ray: {exc}")
                    if isinstance(exc, ray.exceptions.RayActorError):
                        ray.kill(workers[w])
                        workers[w] = actor.remote(THREADS)
                bar.update()
                give(w)
        if worker_stats is not None:
            worker_stats.extend(ray.get([w.stats.remote() for w in workers]))
    finally:
        for worker in workers:
            ray.kill(worker)
