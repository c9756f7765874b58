"""Benchmark "sweep" (``sliceai[scale]``): a sweep on a local Ray against the same cells one
after another in this process.

4 campus traces (seeds 1-4, 30 min at 10 s: 180 intervals) x 3 policies (the bundled campus
policy and two variants: every slice's risk halved, the links' capacity at 80 %) x the 6
allocators = 72 cells. Peer: :func:`sliceai.sweep.cells.run_here` (each cell's
:func:`sliceai.replay.replay`, sequentially, one process); value: :func:`run_sweep` on a
local Ray with every core, Ray's start and stop included. Both write their results under
fresh directories; the figure's note says whether every cell's metrics are identical. Both
run the model on one torch thread per cell, as Ray's workers do (OMP_NUM_THREADS=1): the
``sliceai`` allocator's figures move in the ninth digit with the thread count, and on 2 busy
cores one thread per cell is also the faster way to run cells one after another.
The ``sliceai`` allocator (the model, about 0.1 s an interval on 2 busy cores) takes nearly
all of the time, the ``oracle`` most of the rest. Target: ratio (sequential time / sweep time)
>= 1.7 on 2 cores. Quick: 10 min traces, 2 policies, 3 allocators.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sliceai.bench import Figure
from sliceai.plugins import load
from sliceai.policy.bundled import bundled_policy_path
from sliceai.sweep.cells import plan_cells, run_here
from sliceai.sweep.runner import run_sweep
from sliceai.traffic import generate, load_scenario
from sliceai.traffic.readers import write_trace

START = 1_764_547_200.0


def _policies(root: Path, n: int) -> list[Path]:
    campus = bundled_policy_path("campus.yaml")
    text = campus.read_text(encoding="utf-8")
    halved = re.sub(
        r"(\n\s+risk:\s*)([0-9.eE-]+)", lambda m: f"{m.group(1)}{float(m.group(2)) / 2:g}", text
    )
    variants = [("campus", text), ("campus-risk-half", halved), ("campus-links-80", text)]
    out = []
    for name, body in variants[:n]:
        path = root / f"{name}.yaml"
        if name == "campus-links-80":
            body = re.sub(
                r"(capacity:\s*\"?)([0-9.]+)",
                lambda m: f"{m.group(1)}{float(m.group(2)) * 0.8:g}",
                body,
            )
        path.write_text(body.replace("name: campus", f"name: {name}", 1), encoding="utf-8")
        out.append(path)
    return out


def _metrics(records: list[dict]) -> list[object]:  # type: ignore[type-arg]
    return [r.get("report", {}).get("allocators") or r.get("error") for r in records]


def run(quick: bool) -> Iterator[Figure]:
    minutes = 10 if quick else 30
    n_policies = 2 if quick else 3
    allocators = (
        ["static", "ewma", "oracle"]
        if quick
        else ["static", "proportional", "ewma", "rolling-quantile", "sliceai", "oracle"]
    )
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="sliceai-sweep-bench-") as tmp:
        root = Path(tmp)
        scenario = load_scenario("campus")
        traces = []
        for seed in range(1, 5):
            trace = generate(
                scenario, start=START, n_intervals=minutes * 6, interval_s=10.0, seed=seed
            )
            traces.append(root / f"campus-{seed}.parquet")
            write_trace(trace, traces[-1])
        cells = plan_cells(traces, _policies(root, n_policies), allocators)
        torch = load("torch")  # the model's threads in this process, as in each Ray task
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            t0 = time.perf_counter()
            sequential = run_here(cells, root / "sequential")
            t_seq = time.perf_counter() - t0
        finally:
            torch.set_num_threads(threads)
        t0 = time.perf_counter()
        swept, _ = run_sweep(cells, root / "ray", num_cpus=cores)
        t_ray = time.perf_counter() - t0
    ok = sum(r["status"] == "ok" for r in swept)
    same = _metrics(sequential) == _metrics(swept)
    yield Figure.compare(
        "sweep",
        f"{len(traces)} traces x {n_policies} policies x {len(allocators)} allocators "
        f"({len(cells)} cells, {minutes} min at 10 s) on a local Ray, {cores} cores",
        "speed-up",
        t_seq / t_ray,
        "x sequential",
        "the same cells one after another in one process (torch 1 thread)",
        1.0,
        note=f"sequential {t_seq:.1f} s, Ray {t_ray:.1f} s (start included); {ok}/{len(cells)} "
        f"cells ok; results {'identical' if same else 'DIFFER'}; target >= 1.7x on 2 cores",
    )
