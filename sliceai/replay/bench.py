"""Benchmark "replay": intervals per second through the replay, 8 slices on 2 links.

The campus policy (8 slices, 2 links) and a synthetic lognormal trace at 1 s
intervals. Cases: each baseline allocator alone through the whole replay
(allocator, link model, metrics), peer: the same replay with the fluid queue
run by the plain per-interval numpy loop (:func:`fluid_queue_reference`) instead
of the blocked scan; the fluid queue alone against that loop; and the solver
allocators (``rolling-quantile``, ``oracle``) against the bare solver loop on the
same intervals (one ``SliceSolver.solve`` per interval on point demand, nothing
else: about the ceiling of any solver allocator). Targets: >= 100,000
intervals/s without the solver, >= 1,000 with it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from sliceai.bench import Figure
from sliceai.policy import Policy, load_policy
from sliceai.policy.bundled import bundled_policy_path
from sliceai.replay import linkmodel
from sliceai.replay.engine import ReplayOptions, replay
from sliceai.solver import DemandForecast, Plan, SliceSolver
from sliceai.traffic import Trace

BASE_BPS = np.array([1e6, 30e6, 15e6, 2e6, 1e6, 0.3e6, 8e6, 300e6])


def bench_policy() -> Policy:
    return load_policy(bundled_policy_path("campus.yaml"))


def synthetic_trace(policy: Policy, n: int, seed: int = 0) -> Trace:
    """Lognormal load around fixed per-slice levels, ``(n, 8, 2)`` bit/s at 1 s."""
    rng = np.random.default_rng(seed)
    base = np.resize(BASE_BPS, len(policy.slices))
    load = base[np.newaxis, :, np.newaxis] * rng.lognormal(0.0, 0.3, (n, len(policy.slices), 2))
    return Trace(1_764_547_200.0, 1.0, policy.slice_names, load)


def _rate(trace: Trace, policy: Policy, name: str, repeat: int, reference: bool = False) -> float:
    best = float("inf")
    options = ReplayOptions(reference_queue=reference)
    for _ in range(repeat):
        t0 = time.perf_counter()
        replay(trace, policy, [name], options=options)
        best = min(best, time.perf_counter() - t0)
    return trace.n_intervals / best


def run(quick: bool) -> Iterator[Figure]:
    policy = bench_policy()
    n = 20_000 if quick else 200_000
    n_peer = 2_000 if quick else 20_000
    repeat = 1 if quick else 3
    trace = synthetic_trace(policy, n)
    peer_trace = trace.window(0, n_peer)
    for name in ("static", "proportional", "ewma"):
        value = _rate(trace, policy, name, repeat)
        peer = _rate(peer_trace, policy, name, 1, reference=True)
        yield Figure.compare(
            "replay",
            f"{name} 8 slices x 2 links",
            "throughput",
            value,
            "intervals/s",
            "per-interval numpy queue loop",
            peer,
            note="target >= 100,000 intervals/s",
        )
    k = 2 * len(policy.slices)
    rng = np.random.default_rng(1)
    arrivals = rng.exponential(1e6, (n, k))
    service = np.full((n, k), 1e6)
    buffer = 0.05 * service
    b0 = np.zeros(k)
    t0 = time.perf_counter()
    linkmodel.fluid_queue(arrivals, service, buffer, b0, 1.0)
    fast = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    linkmodel.fluid_queue_reference(arrivals[:n_peer], service[:n_peer], buffer[:n_peer], b0, 1.0)
    slow = n_peer / (time.perf_counter() - t0)
    yield Figure.compare(
        "replay",
        f"fluid queue {k} queues",
        "throughput",
        fast,
        "intervals/s",
        "per-interval numpy queue loop",
        slow,
    )
    n_solver = 1_000 if quick else 5_000
    solver_trace = trace.window(0, n_solver)
    bare = _bare_solver_rate(policy, solver_trace)
    for name in ("rolling-quantile", "oracle"):
        yield Figure.compare(
            "replay",
            f"{name} 8 slices x 2 links",
            "throughput",
            _rate(solver_trace, policy, name, 1),
            "intervals/s",
            "bare SliceSolver.solve loop (point demand)",
            bare,
            note="target >= 1,000 intervals/s (one solve per interval)",
        )


def _bare_solver_rate(policy: Policy, trace: Trace) -> float:
    """Solves per second of the solver alone on each interval's exact demand (no replay),
    each interval given the last plan, as the replay gives it."""
    solver = SliceSolver(policy)
    demand = [DemandForecast.point(row) for row in trace.load_bps]
    previous: Plan | None = None
    t0 = time.perf_counter()
    for d in demand:
        previous = solver.solve(d, previous)
    return len(demand) / (time.perf_counter() - t0)
