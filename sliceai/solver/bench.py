"""``sliceai bench solver``: allocation time against cvxpy and raw highspy on the same LP.

Cases (slices x links): 8x1, 64x16, 256x64, 1024x128; each slice crosses up to
4 random links; forecasts have 16 quantile levels and follow a slow random
walk from interval to interval (as the live loop sees them); every interval
passes the previous plan, so the churn cost is part of the LP.

Per interval and both directions, timed:

- ``sliceai warm``: :meth:`SliceSolver.solve` of a solver kept across intervals
  (vectorised build + exact reduced LP warm-started from last prices; DL's and
  UL's HiGHS runs side by side on two threads from 128 slices up, also timed on
  one thread);
- ``sliceai cold``: a fresh ``SliceSolver`` per interval (policy arrays too);
- peer ``raw highspy``: the straightforward LP (one column per segment, one
  row per link) with its matrices pre-built: ``passModel`` + ``run`` only,
  dual simplex without presolve (faster than HiGHS's defaults here);
- peer ``cvxpy``: the same LP written in cvxpy and solved with HiGHS, a new
  ``Problem`` per call (re-solving one Problem would warm-start).

The objectives of all three must agree within 1e-6 relative, or the benchmark
raises. ``--quick``: fewer intervals, no 1024x128.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Iterator

import cvxpy as cp
import highspy
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

from sliceai.bench import Figure
from sliceai.solver.formulation import Segments
from sliceai.solver.highs_model import new_highs, pass_lp
from sliceai.solver.plan import Plan
from sliceai.solver.solver import SliceSolver
from sliceai.solver.synthetic import demand_sequence, random_policy

FloatArray = npt.NDArray[np.float64]

CASES: tuple[tuple[int, int], ...] = ((8, 1), (64, 16), (256, 64), (1024, 128))
AGREEMENT = 1e-6


class ObjectiveMismatch(RuntimeError):
    """The solver and a peer disagree on the optimum of the same LP."""


def _full_lp(
    seg: Segments, incidence: npt.NDArray[np.bool_]
) -> tuple[FloatArray, FloatArray, sp.csc_matrix]:
    """Costs, upper bounds and matrix of the straightforward segment LP."""
    used = seg.lengths.ravel() > 0
    k = seg.lengths.shape[1]
    slice_of = np.repeat(np.arange(seg.lengths.shape[0]), k)[used]
    a = sp.csc_matrix(incidence.astype(np.float64))[:, slice_of]
    return seg.slopes.ravel()[used], seg.lengths.ravel()[used], a


def _objective(seg: Segments, rates: FloatArray) -> float:
    """sum_s f_s(x_s) for normalised ``rates`` ``(n_slices,)``."""
    n = seg.lengths.shape[0]
    start = np.concatenate([np.zeros((n, 1)), np.cumsum(seg.lengths, axis=1)[:, :-1]], axis=1)
    return float((seg.slopes * np.clip(rates[:, None] - start, 0.0, seg.lengths)).sum())


def _raw_highspy(
    cost: FloatArray, upper: FloatArray, a: sp.csc_matrix, capacity: FloatArray
) -> tuple[float, float]:
    """(seconds for passModel + run, objective)."""
    h = new_highs()  # presolve off: faster than HiGHS's default on this LP
    t0 = time.perf_counter()
    pass_lp(h, cost, upper, a, capacity)
    h.run()
    elapsed = time.perf_counter() - t0
    return elapsed, float(h.getInfo().objective_function_value)


def _cvxpy(
    cost: FloatArray, upper: FloatArray, a: sp.csc_matrix, capacity: FloatArray
) -> tuple[float, float]:
    """(seconds to build and solve a fresh Problem, objective)."""
    t0 = time.perf_counter()
    y = cp.Variable(cost.size)
    problem = cp.Problem(cp.Maximize(cost @ y), [y >= 0, y <= upper, a @ y <= capacity])
    problem.solve(solver=cp.HIGHS)  # type: ignore[no-untyped-call]
    elapsed = time.perf_counter() - t0
    return elapsed, float(problem.value)


def _check(case: str, who: str, value: float, reference: float) -> None:
    if abs(value - reference) > AGREEMENT * max(1.0, abs(reference)):
        raise ObjectiveMismatch(
            f"solver bench {case}: {who} objective {value:.12g} differs from raw highspy "
            f"{reference:.12g} by more than {AGREEMENT:g} relative"
        )


def run_case(n_slices: int, n_links: int, intervals: int, cvxpy_every: int) -> Iterator[Figure]:
    case = f"{n_slices}x{n_links}"
    rng = np.random.default_rng(1000 * n_slices + n_links)
    policy, median = random_policy(rng, n_slices, n_links, links_per_slice=4)
    demands = demand_sequence(rng, median, intervals + 2)
    solver = SliceSolver(policy)
    serial = SliceSolver(policy, parallel=False)
    one_thread: list[float] = []
    capacity_bps = solver.arrays.capacity_bps
    previous: Plan | None = None
    warm: list[float] = []
    cold: list[float] = []
    raw: list[float] = []
    cvx: list[float] = []
    cvx_pairs: list[tuple[float, float]] = []
    bar = tqdm(demands, desc=f"solver {case}", file=sys.stderr, leave=False)
    for t, demand in enumerate(bar):
        segs, *_ = solver.segments(demand, previous)
        t0 = time.perf_counter()
        SliceSolver(policy).solve(demand, previous)
        t1 = time.perf_counter()
        plan = solver.solve(demand, previous)
        t2 = time.perf_counter()
        serial.solve(demand, previous)
        one_thread.append(time.perf_counter() - t2)
        raw_s = 0.0
        cvx_s = 0.0
        for d in range(2):
            seg = segs[d]
            lp = _full_lp(seg, solver.arrays.incidence)
            elapsed, reference = _raw_highspy(*lp, capacity_bps / seg.scale)
            raw_s += elapsed
            _check(case, "sliceai", _objective(seg, plan.rates_bps[:, d] / seg.scale), reference)
            if t % cvxpy_every == 0:
                elapsed, value = _cvxpy(*lp, capacity_bps / seg.scale)
                cvx_s += elapsed
                _check(case, "cvxpy", value, reference)
        if t >= 2:  # the first two intervals warm up imports and caches
            cold.append(t1 - t0)
            warm.append(t2 - t1)
            raw.append(raw_s)
            if t % cvxpy_every == 0:
                cvx.append(cvx_s)
                cvx_pairs.append((t2 - t1, cvx_s))
        previous = plan
    ms = 1000.0
    warm_ms = statistics.median(warm) * ms
    note = f"{len(warm)} intervals, both directions; objectives agree within {AGREEMENT:g}"
    yield Figure.compare(
        "solver",
        case,
        "median solve (warm)",
        warm_ms,
        "ms",
        "raw highspy",
        statistics.median(raw) * ms,
        note,
    )
    if cvx:
        yield Figure.compare(
            "solver",
            case,
            "median solve (warm)",
            warm_ms,
            "ms",
            "cvxpy",
            statistics.median(cvx) * ms,
            f"{len(cvx)} cvxpy solves",
        )
    yield Figure.compare(
        "solver",
        case,
        "median solve (cold)",
        statistics.median(cold) * ms,
        "ms",
        "raw highspy",
        statistics.median(raw) * ms,
    )
    yield Figure("solver", case, "p95 solve (warm)", float(np.percentile(warm, 95)) * ms, "ms")
    if solver.parallel:
        yield Figure.compare(
            "solver",
            case,
            "median solve (warm, 1 thread)",
            statistics.median(one_thread[2:]) * ms,
            "ms",
            "raw highspy",
            statistics.median(raw) * ms,
            "DL then UL on one thread, as the peer",
        )


def _silence_highs_banner() -> None:
    """highspy.Highs() prints a banner on stdout once per process (cvxpy makes one): do it
    now with stdout pointed at /dev/null so ``--json`` output stays clean."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        highspy.Highs()  # type: ignore[no-untyped-call]
    finally:
        os.dup2(saved, 1)
        os.close(devnull)
        os.close(saved)


def run(quick: bool) -> Iterator[Figure]:
    _silence_highs_banner()
    for n_slices, n_links in CASES:
        if quick and n_slices > 256:
            continue
        intervals = 5 if quick else 30
        cvxpy_every = 1 if n_slices <= 256 else 3
        yield from run_case(n_slices, n_links, intervals, cvxpy_every)
