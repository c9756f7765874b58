"""The replay loop: a trace, chunk by chunk, through every allocator and the link model.

Each chunk of the trace (in policy slice order) goes to every allocator, whose
rates go through its own :class:`~sliceai.replay.linkmodel.LinkModel` (queues
carry over between chunks) and into its
:class:`~sliceai.replay.metrics.MetricsAccumulator`. Memory is bounded: the
trace may stream from a reader; only downsampled series are kept for plots.
Trace slices must be policy slices; policy slices missing from the trace are
replayed with no traffic (listed in ``ReplayResult.missing_slices``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

from sliceai.policy import Policy
from sliceai.replay.allocators import Allocator, make_allocator
from sliceai.replay.errors import ReplayError
from sliceai.replay.linkmodel import DEFAULT_BUFFER_BUDGETS, LinkModel
from sliceai.replay.metrics import SHORTFALL_TOLERANCE, MetricsAccumulator
from sliceai.traffic import Trace

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ReplayOptions:
    """Knobs of a replay; the defaults are the documented model."""

    chunk_intervals: int = 4096
    buffer_budgets: float = DEFAULT_BUFFER_BUDGETS
    shortfall_tolerance: float = SHORTFALL_TOLERANCE
    plot_points: int = 1000
    reference_queue: bool = False  # the per-interval loop instead of the scan (checks, benchmarks)

    def __post_init__(self) -> None:
        if self.chunk_intervals < 1:
            raise ReplayError(f"chunk_intervals must be >= 1, got {self.chunk_intervals}")
        if self.buffer_budgets <= 0:
            raise ReplayError(f"buffer_budgets must be > 0, got {self.buffer_budgets}")
        if not 0 <= self.shortfall_tolerance < 1:
            raise ReplayError(
                f"shortfall_tolerance must be in [0, 1), got {self.shortfall_tolerance}"
            )


class SeriesRecorder:
    """Keeps block means of a ``(n, S, 2)`` series, at most ~2 x ``max_points`` blocks.

    Block length doubles (pairs merge) whenever there are too many blocks, so any length of
    trace fits; :meth:`series` returns ``(first_interval (m,), means (m, S, 2))``.
    """

    def __init__(self, shape: tuple[int, int], max_points: int) -> None:
        self.max_points = max(max_points, 1)
        self.block = 1
        self.means = np.zeros((0, *shape))
        self.partial_sum = np.zeros(shape)
        self.partial_n = 0

    def add(self, x: FloatArray) -> None:
        i = 0
        if self.partial_n:
            k = min(self.block - self.partial_n, x.shape[0])
            self.partial_sum += x[:k].sum(0)
            self.partial_n += k
            i = k
            if self.partial_n == self.block:
                self.means = np.concatenate([self.means, (self.partial_sum / self.block)[None]])
                self.partial_sum[:] = 0.0
                self.partial_n = 0
        rest = x[i:]
        full = rest.shape[0] // self.block
        if full:
            blocks = rest[: full * self.block].reshape(full, self.block, *rest.shape[1:]).mean(1)
            self.means = np.concatenate([self.means, blocks])
        tail = rest[full * self.block :]
        if tail.shape[0]:
            self.partial_sum += tail.sum(0)
            self.partial_n += tail.shape[0]
        while self.means.shape[0] > 2 * self.max_points:
            if self.means.shape[0] % 2:
                self.partial_sum += self.means[-1] * self.block
                self.partial_n += self.block
                self.means = self.means[:-1]
            self.means = self.means.reshape(-1, 2, *self.means.shape[1:]).mean(1)
            self.block *= 2

    def series(self) -> tuple[FloatArray, FloatArray]:
        means = self.means
        if self.partial_n:
            means = np.concatenate([means, (self.partial_sum / self.partial_n)[None]])
        first = np.arange(means.shape[0], dtype=np.float64) * self.block
        return first, means


@dataclass
class AllocatorOutcome:
    """One allocator's result: metrics (see :mod:`sliceai.replay.metrics`) and plot series."""

    name: str
    metrics: dict[str, Any]
    series_first: FloatArray  # (m,) first interval index of each plotted block
    allocation_bps: FloatArray  # (m, S, 2) mean effective allocation per block


@dataclass
class ReplayResult:
    trace: str
    policy: str
    intervals: int
    interval_s: float
    start: float
    slices: tuple[str, ...]
    links: tuple[str, ...]
    allocators: dict[str, AllocatorOutcome]
    demand_first: FloatArray  # (m,)
    demand_bps: FloatArray  # (m, S, 2) mean demand per block
    missing_slices: tuple[str, ...] = field(default=())
    skipped_allocators: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """The JSON report (shape documented in the README)."""
        return {
            "trace": self.trace,
            "policy": self.policy,
            "intervals": self.intervals,
            "interval_s": self.interval_s,
            "start": self.start,
            "missing_slices": list(self.missing_slices),
            "skipped_allocators": list(self.skipped_allocators),
            "allocators": {name: out.metrics for name, out in self.allocators.items()},
        }


def _column_map(policy: Policy, trace_slices: tuple[str, ...]) -> tuple[list[int], tuple[str, ...]]:
    unknown = [s for s in trace_slices if s not in policy.slice_names]
    if unknown:
        raise ReplayError(
            f"trace slice(s) {', '.join(unknown)} not in policy {policy.name} "
            f"({', '.join(policy.slice_names)})"
        )
    missing = tuple(s for s in policy.slice_names if s not in trace_slices)
    return [policy.slice_index(s) for s in trace_slices], missing


def _started(
    instances: list[Allocator], policy: Policy, interval_s: float, start: float, skip: bool
) -> list[Allocator]:
    ok = []
    for a in instances:
        try:
            a.start(policy, policy.slice_names, interval_s, start)
        except Exception as exc:
            if not skip:
                raise
            print(f"warning: allocator {a.name} left out: {exc}", file=sys.stderr)
            continue
        ok.append(a)
    return ok


def _pieces(chunks: Iterable[Trace], size: int) -> Iterator[Trace]:
    for chunk in chunks:
        if chunk.n_intervals <= size:
            yield chunk
        else:
            yield from (
                chunk.window(i, min(i + size, chunk.n_intervals))
                for i in range(0, chunk.n_intervals, size)
            )


def replay(
    source: Trace | Iterable[Trace],
    policy: Policy,
    allocators: Sequence[str | Allocator],
    *,
    options: ReplayOptions | None = None,
    trace_name: str = "trace",
    total_intervals: int | None = None,
    progress: bool = False,
    skip_failing: bool = False,
) -> ReplayResult:
    """Replay ``source`` (a trace or its consecutive chunks) through ``allocators``.

    Allocators are names (see :func:`~sliceai.replay.allocators.allocator_names`) or
    instances. ``total_intervals`` sizes the progress bar when ``source`` streams.
    Raises :class:`ReplayError` for a trace that does not fit the policy or an allocator
    that returns the wrong shape or non-finite rates.
    """
    opts = options or ReplayOptions()
    if not allocators:
        raise ReplayError("no allocators to replay")
    instances = [make_allocator(a) if isinstance(a, str) else a for a in allocators]
    names = [a.name for a in instances]
    if len(set(names)) != len(names):
        raise ReplayError(f"allocator names must be unique, got {names}")
    if isinstance(source, Trace):
        total_intervals = source.n_intervals
        source = [source]
    n_slices = len(policy.slices)
    bar = tqdm(
        total=None if total_intervals is None else total_intervals * len(instances),
        unit="interval",
        unit_scale=True,
        desc="replay",
        file=sys.stderr,
        disable=not progress,
    )
    columns: list[int] | None = None
    first_slices: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    interval_s = start = 0.0
    links: list[LinkModel] = []
    accs: list[MetricsAccumulator] = []
    recorders: list[SeriesRecorder] = []
    demand_rec = SeriesRecorder((n_slices, 2), opts.plot_points)
    intervals = 0
    skipped: list[str] = []
    with bar:
        for chunk in _pieces(source, opts.chunk_intervals):
            if columns is None:
                columns, missing = _column_map(policy, chunk.slices)
                first_slices = chunk.slices
                interval_s, start = chunk.interval_s, chunk.start
                instances = _started(instances, policy, interval_s, start, skip_failing)
                if not instances:
                    raise ReplayError("no allocator could start")
                skipped = [n for n in names if n not in {a.name for a in instances}]
                bar.total = None if total_intervals is None else total_intervals * len(instances)
                links = [
                    LinkModel(policy, interval_s, opts.buffer_budgets, opts.reference_queue)
                    for _ in instances
                ]
                accs = [
                    MetricsAccumulator(policy, interval_s, opts.shortfall_tolerance)
                    for _ in instances
                ]
                recorders = [SeriesRecorder((n_slices, 2), opts.plot_points) for _ in instances]
            elif chunk.slices != first_slices:
                raise ReplayError("trace chunks disagree on their slices")
            n = chunk.n_intervals
            load = np.zeros((n, n_slices, 2))
            load[:, columns] = chunk.load_bps
            load.setflags(write=False)
            demand_rec.add(np.nan_to_num(load))
            for a, link, acc, rec in zip(instances, links, accs, recorders, strict=True):
                rates = np.asarray(a.allocate_chunk(load), dtype=np.float64)
                if rates.shape != load.shape:
                    raise ReplayError(
                        f"allocator {a.name} returned shape {rates.shape}, expected {load.shape}"
                    )
                if not np.all(np.isfinite(rates)):
                    raise ReplayError(f"allocator {a.name} returned non-finite rates")
                queue, effective = link.step(load, rates)
                acc.update(load, effective, queue, link.link_served(queue.served))
                rec.add(effective)
                bar.update(n)
            intervals += n
    if columns is None:
        raise ReplayError("the trace has no intervals")
    outcomes = {}
    for a, acc, rec in zip(instances, accs, recorders, strict=True):
        first, means = rec.series()
        outcomes[a.name] = AllocatorOutcome(a.name, acc.summary(), first, means)
    d_first, d_means = demand_rec.series()
    return ReplayResult(
        trace_name,
        policy.name,
        intervals,
        interval_s,
        start,
        policy.slice_names,
        policy.link_names,
        outcomes,
        d_first,
        d_means,
        missing,
        tuple(skipped),
    )
