"""The Ray side of ``sliceai sweep``: each unfinished cell as a Ray task.

The one module of sliceai that imports Ray (``sliceai[scale]``); the command loads it
through :func:`sliceai.plugins.load`, so without the extra ``sliceai sweep`` says what to
install. A task runs :func:`sliceai.sweep.cells.run_cell` (the replay itself,
:func:`sliceai.replay.replay`) and writes the cell's result under the output directory,
which every Ray node must see (a shared file system on a cluster). Without ``address``
Ray starts here on loopback with ``num_cpus`` (default: the machine's cores) and stops
at the end; with one, the cluster's nodes need the same sliceai installed.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray
from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

from sliceai.sweep.cells import Cell, error_record, finished, run_cell


def _task(cell: Cell, out: str) -> dict[str, Any]:
    return run_cell(cell, Path(out))


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


def run_sweep(
    cells: Sequence[Cell],
    out: Path,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    progress: bool = False,
) -> tuple[list[dict[str, Any]], int]:
    """Run every unfinished cell as a Ray task; (every cell's record in ``cells`` order,
    how many were finished already and skipped). A cell whose task fails (its replay
    raised, or Ray lost the worker) has an error record; the others go on."""
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
                remote = ray.remote(num_cpus=1, max_retries=0)(_task)
                order = sorted(todo, key=lambda i: -cells[i].weight)  # slow cells first
                pending = {remote.remote(cells[i], str(out)): i for i in order}
                while pending:
                    ready, _ = ray.wait(list(pending), num_returns=1)
                    for ref in ready:
                        i = pending.pop(ref)
                        try:
                            records[i] = ray.get(ref)
                        except ray.exceptions.RayError as exc:
                            records[i] = error_record(cells[i], out, f"Ray: {exc}")
                        bar.update()
            finally:
                if started:
                    ray.shutdown()
    return [records[i] for i in range(len(cells))], skipped
