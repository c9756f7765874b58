"""The replay loop: a trace, chunk by chunk, through every allocator and the link model.

Each chunk of the trace (in policy slice order) goes to every allocator, whose
rates go through its own :class:`~sliceai.replay.linkmodel.LinkModel` (queues
carry over between chunks) and into its
:class:`~sliceai.replay.metrics.MetricsAccumulator`. Memory is bounded: the
trace may stream from a reader; only downsampled series are kept for plots.
Trace slices must be policy slices; policy slices missing from the trace are
replayed with no traffic (listed in ``ReplayResult.missing_slices``). A direction
without demand anywhere in the trace (a downlink-only export) is absent: no
allocator reserves capacity in it, so none is charged for it
(``ReplayResult.absent_directions``).
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
from sliceai.replay.allocators import Allocator
from sliceai.replay.errors import ReplayError
from sliceai.replay.linkmodel import DEFAULT_BUFFER_BUDGETS, LinkModel
from sliceai.replay.metrics import SHORTFALL_TOLERANCE, MetricsAccumulator
from sliceai.replay.registry import make_allocator
from sliceai.traffic import DIRECTION_NAMES, Trace

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
    absent_directions: tuple[str, ...] = field(default=())  # "dl" / "ul": no demand at all

    def to_json(self) -> dict[str, Any]:
        """The JSON report (shape documented in the README)."""
        return {
            "trace": self.trace,
            "policy": self.policy,
            "intervals": self.intervals,
            "interval_s": self.interval_s,
            "start": self.start,
            "missing_slices": list(self.missing_slices),
            "absent_directions": list(self.absent_directions),
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


@dataclass
class _Lane:
    """One allocator's path through the replay: its link model, metrics and plot series."""

    allocator: Allocator
    link: LinkModel
    metrics: MetricsAccumulator
    series: SeriesRecorder
    absent: tuple[int, ...] = ()  # directions with no demand: nothing reserved

    def step(self, load: FloatArray) -> None:
        """Allocate, queue and measure ``n`` intervals of ``load`` ``(n, S, 2)`` bit/s."""
        a = self.allocator
        rates = np.asarray(a.allocate_chunk(load), dtype=np.float64)
        if rates.shape != load.shape:
            raise ReplayError(
                f"allocator {a.name} returned shape {rates.shape}, expected {load.shape}"
            )
        if not np.all(np.isfinite(rates)):
            raise ReplayError(f"allocator {a.name} returned non-finite rates")
        if self.absent:
            rates = rates.copy()
            rates[:, :, list(self.absent)] = 0.0
        queue, effective = self.link.step(load, rates)
        self.metrics.update(load, effective, queue, self.link.link_served(queue.served))
        self.series.add(effective)

    def outcome(self) -> AllocatorOutcome:
        first, means = self.series.series()
        return AllocatorOutcome(self.allocator.name, self.metrics.summary(), first, means)


def _lanes(
    instances: list[Allocator],
    policy: Policy,
    first: Trace,
    opts: ReplayOptions,
    skip: bool,
    absent: tuple[int, ...] = (),
) -> list[_Lane]:
    started = _started(instances, policy, first.interval_s, first.start, skip)
    if not started:
        raise ReplayError("no allocator could start")
    shape = (len(policy.slices), 2)
    return [
        _Lane(
            a,
            LinkModel(policy, first.interval_s, opts.buffer_budgets, opts.reference_queue),
            MetricsAccumulator(policy, first.interval_s, opts.shortfall_tolerance),
            SeriesRecorder(shape, opts.plot_points),
            absent,
        )
        for a in started
    ]


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
    demand_directions: tuple[bool, bool] | None = None,
) -> ReplayResult:
    """Replay ``source`` (a trace or its consecutive chunks) through ``allocators``.

    Allocators are names (see :func:`~sliceai.replay.registry.allocator_names`) or
    instances. ``total_intervals`` sizes the progress bar when ``source`` streams.
    ``skip_failing``: an allocator whose ``start`` raises (a plug-in whose model will not
    load) is left out with a warning on stderr instead of stopping the replay.
    Raises :class:`ReplayError` for a trace that does not fit the policy (or whose chunks
    are not consecutive) and for an allocator that returns the wrong shape or non-finite
    rates. ``demand_directions``: whether the trace has demand in DL and in UL
    (:func:`directions_with_demand`); found here when ``source`` is one trace, else all
    directions count as present.
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
        if demand_directions is None:
            demand_directions = directions_with_demand([source])
        source = [source]
    absent = tuple(d for d, has in enumerate(demand_directions or (True, True)) if not has)
    n_slices = len(policy.slices)
    bar = tqdm(
        total=None if total_intervals is None else total_intervals * len(instances),
        unit="interval",
        unit_scale=True,
        desc="replay",
        file=sys.stderr,
        disable=not progress,
    )
    first: Trace | None = None
    columns: list[int] = []
    missing: tuple[str, ...] = ()
    lanes: list[_Lane] = []
    demand = SeriesRecorder((n_slices, 2), opts.plot_points)
    intervals = 0
    with bar:
        for chunk in _pieces(source, opts.chunk_intervals):
            if first is None:
                first = chunk
                columns, missing = _column_map(policy, chunk.slices)
                lanes = _lanes(instances, policy, chunk, opts, skip_failing, absent)
                if total_intervals is not None:
                    bar.total = total_intervals * len(lanes)
            else:
                _check_continues(first, chunk, intervals)
            load = np.zeros((chunk.n_intervals, n_slices, 2))
            load[:, columns] = chunk.load_bps
            load.setflags(write=False)
            demand.add(np.nan_to_num(load))
            for lane in lanes:
                lane.step(load)
                bar.update(chunk.n_intervals)
            intervals += chunk.n_intervals
    if first is None:
        raise ReplayError("the trace has no intervals")
    kept = {lane.allocator.name for lane in lanes}
    d_first, d_means = demand.series()
    return ReplayResult(
        trace_name,
        policy.name,
        intervals,
        first.interval_s,
        first.start,
        policy.slice_names,
        policy.link_names,
        {lane.allocator.name: lane.outcome() for lane in lanes},
        d_first,
        d_means,
        missing,
        tuple(n for n in names if n not in kept),
        tuple(DIRECTION_NAMES[d] for d in absent),
    )


def directions_with_demand(chunks: Iterable[Trace]) -> tuple[bool, bool]:
    """Whether any slice has demand (above 0, measured) in DL and in UL over ``chunks``."""
    found = np.zeros(2, dtype=bool)
    for chunk in chunks:
        found |= (np.nan_to_num(chunk.load_bps) > 0).any(axis=(0, 1))
    return bool(found[0]), bool(found[1])


def _check_continues(first: Trace, chunk: Trace, seen: int) -> None:
    if chunk.slices != first.slices:
        raise ReplayError("trace chunks disagree on their slices")
    expected = first.start + seen * first.interval_s
    if chunk.interval_s != first.interval_s or abs(chunk.start - expected) > 1e-6 * max(
        1.0, first.interval_s
    ):
        raise ReplayError(
            f"trace chunks are not consecutive: a chunk starts at {chunk.start!r}, "
            f"expected {expected!r} (interval {first.interval_s:g} s)"
        )
