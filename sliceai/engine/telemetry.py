"""Telemetry ingestion: validate, index and buffer per-source slice rates.

The ingest path never waits for a decision: it validates a batch (vectorised,
outside any lock), then writes the rates into the source's row under one short
lock. The control loop calls :meth:`TelemetryBuffer.collect` once per interval
and merges the latest rates of every live source (max over sources, so a
slice seen by two switches is not counted twice).

A source is *stale* when it has been silent for ``stale_after_s``; a slice is
stale when every source that ever reported it is stale. Stale rates are not
merged; such slices are planned from the forecast alone. A source silent for
:attr:`~sliceai.engine.limits.Limits.source_expiry_s` is forgotten, and at most
``Limits.sources`` are kept (``Limits.sources_per_identity`` per feeding identity):
a new source past either is refused, so plans stay small whatever ids callers invent.

Every telemetry path (controller batches by name or by slice-table id, KPM
reports) validates the same thing, in :meth:`TelemetryBuffer.ingest`: each
slice's rate as stored (after summing a slice named twice, after unit
conversion) is finite, >= 0 and <= 1e13 bit/s.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import numpy.typing as npt

from sliceai.engine.clock import SYSTEM_CLOCK, Clock
from sliceai.engine.errors import InvalidInput, NotFound
from sliceai.engine.limits import LimitHits, Limits

MAX_BATCH_SLICES = Limits.batch_rows  # the default; the running limit is Limits.batch_rows
MAX_LISTED_STALE = 64  # stale source ids a plan names (the rest are counted)
MAX_RATE_BPS = 1e13
MAX_CLOCK_SKEW_S = 300.0
MAX_PERIOD_S = 900.0
_INDEX_CACHE_SIZE = 256
_RESULTS_CACHE_BYTES = 16 << 20
_MAX_BITS = np.array(MAX_RATE_BPS).view(np.uint64)[()]
_FLOAT64, _UINT64, _INT64 = np.dtype(np.float64), np.dtype(np.uint64), np.dtype(np.int64)
_max = np.maximum.reduce

# per stream slice table: its policy indices, and (where, has_duplicates) per int64 id list
_TableCache = tuple[npt.NDArray[np.intp], dict[bytes, tuple[npt.NDArray[np.intp] | slice, bool]]]


class SliceIndexer:
    """Maps a batch's slice names to policy indices, caching whole name lists.

    Controllers send the same list of names in every batch, so the common
    case is one dict lookup of a tuple.
    """

    def __init__(self, slice_names: Sequence[str]) -> None:
        self.slice_names = tuple(slice_names)
        self._index = {name: i for i, name in enumerate(self.slice_names)}
        self._cache: dict[tuple[str, ...], tuple[npt.NDArray[np.intp], bool]] = {}
        self._tables: dict[tuple[str, ...], _TableCache] = {}
        self._table_of_id: dict[int, tuple[tuple[str, ...], _TableCache]] = {}
        self._cached_bytes = 0  # keys and index arrays of the tables' results

    def indices(self, names: Sequence[str]) -> tuple[npt.NDArray[np.intp], bool]:
        """``(indices (n,), has_duplicates)``; NotFound for an unknown name."""
        key = tuple(names)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        try:
            idx = np.fromiter((self._index[n] for n in key), dtype=np.intp, count=len(key))
        except KeyError as exc:
            raise NotFound(f"unknown slice {str(exc.args[0])[:64]!r}") from None
        result = (idx, len(set(key)) != len(key))
        if len(self._cache) >= _INDEX_CACHE_SIZE:
            self._cache.clear()
        self._cache[key] = result
        return result

    def from_table(
        self, table: tuple[str, ...], ids: npt.NDArray[np.integer]
    ) -> tuple[npt.NDArray[np.intp] | slice, bool]:
        """``(where, has_duplicates)`` for ``ids`` into a stream's slice ``table``.

        ``where`` indexes the policy's slices: an index array, or a slice when
        the ids name a run of consecutive policy slices in order. InvalidInput for
        an id outside the table, NotFound for a table name the policy does not know.
        Results are cached per table and int64 id list (a controller sends the
        same ids in every batch).
        """
        same = self._table_of_id.get(id(table))  # (a tuple of names is slow to hash)
        if same is not None and same[0] is table:
            known = same[1]
        else:
            found = self._tables.get(table)
            if found is None:
                mapping = np.array([self._index.get(name, -1) for name in table], dtype=np.intp)
                if len(self._tables) >= _INDEX_CACHE_SIZE:
                    self._tables.clear()
                    self._table_of_id.clear()
                    self._cached_bytes = 0
                found = self._tables[table] = (mapping, {})
            if len(self._table_of_id) >= _INDEX_CACHE_SIZE:
                self._table_of_id.clear()
            self._table_of_id[id(table)] = (table, found)  # holds ``table``: its id stays its own
            known = found
        mapping, results = known
        key = ids.tobytes() if ids.dtype is _INT64 else None
        hit = results.get(key) if key is not None else None
        if hit is not None:
            return hit
        if ids.size == 0:
            return np.zeros(0, dtype=np.intp), False
        if ids.min() < 0 or ids.max() >= len(table):
            raise InvalidInput(
                f"slice_ids must index the Hello's slice_table of {len(table)} names"
            )
        idx = mapping[ids]
        if idx.min() < 0:
            missing = table[int(ids[np.argmin(idx)])]
            raise NotFound(f"unknown slice {missing[:64]!r}")
        dups = bool(len(np.unique(ids)) != len(ids))
        where: npt.NDArray[np.intp] | slice = idx
        if not dups and int(idx[-1]) - int(idx[0]) == len(idx) - 1 and (np.diff(idx) == 1).all():
            where = slice(int(idx[0]), int(idx[-1]) + 1)
        if key is not None:
            size = len(key) + (0 if isinstance(where, slice) else where.nbytes)
            if self._cached_bytes + size > _RESULTS_CACHE_BYTES:
                for _, cached in self._tables.values():
                    cached.clear()
                self._cached_bytes = 0
            self._cached_bytes += size
            results[key] = (where, dups)
        return where, dups


def check_time(timestamp_unix_s: float, period_s: float, now: float) -> None:
    """InvalidInput unless the timestamp is within 300 s of ``now`` (epoch s) and
    0 < period <= 900 s."""
    if not math.isfinite(timestamp_unix_s) or abs(timestamp_unix_s - now) > MAX_CLOCK_SKEW_S:
        raise InvalidInput(
            f"timestamp {timestamp_unix_s!r} is more than {MAX_CLOCK_SKEW_S:g} s off "
            f"the server clock ({now:.3f})"
        )
    if not (0 < period_s <= MAX_PERIOD_S):
        raise InvalidInput(f"period {period_s!r} s outside (0, {MAX_PERIOD_S:g}] s")


def check_rates(name: str, values: npt.NDArray[np.float64]) -> None:
    """InvalidInput unless every value is finite, >= 0 and <= 1e13."""
    # Fast path, one reduction: +0.0 .. 1e13 are exactly the float64s whose bits, read as
    # uint64, are at most those of 1e13 (negative numbers, -0.0 included, have the sign bit
    # set; infinities and NaNs have larger exponents). Anything else gets the full check,
    # so the set of accepted values is unchanged.
    if values.dtype is _FLOAT64 and (not values.size or _max(values.view(_UINT64)) <= _MAX_BITS):
        return
    # min / max are NaN when any value is NaN, and NaN fails both comparisons
    if values.size and not (values.min() >= 0 and values.max() <= MAX_RATE_BPS):
        bad = values[~(np.isfinite(values) & (values >= 0) & (values <= MAX_RATE_BPS))]
        raise InvalidInput(
            f"{name}: value {bad[0]!r} is not a finite rate in 0 .. {MAX_RATE_BPS:.0e}"
        )


@dataclass
class _Source:
    rates: npt.NDArray[np.float64]  # (n_slices, 2) latest bit/s, NaN = never reported
    last_seen: float  # monotonic s
    ended: bool = False  # sent end_of_period since the last collect
    owner: str | None = None  # the identity that feeds it (counted against its limit)


@dataclass(frozen=True)
class CollectedTelemetry:
    """Merged telemetry of one interval.

    ``measured_bps``: ``(n_slices, 2)`` bit/s, NaN where no live source reported.
    ``stale_slices``: ``(n_slices,)`` bool. ``trigger_time``: the clock's monotonic s
    of the ingest that completed the period (None when the timer fired).
    """

    slice_names: tuple[str, ...]
    measured_bps: npt.NDArray[np.float64]
    stale_slices: npt.NDArray[np.bool_]
    stale_sources: tuple[str, ...]
    live_sources: int
    trigger_time: float | None = None
    samples: int = field(default=0)


class TelemetryBuffer:
    """Latest per-source slice rates; thread-safe.

    ``limits``: batch rows, how many sources and for how long (the defaults of
    :class:`~sliceai.engine.limits.Limits` when None); refusals are counted in ``hits``.
    """

    def __init__(
        self,
        slice_names: Sequence[str],
        stale_after_s: float,
        clock: Clock = SYSTEM_CLOCK,
        limits: Limits | None = None,
        hits: LimitHits | None = None,
    ) -> None:
        self.stale_after_s = stale_after_s
        self.clock = clock
        self.limits = limits or Limits()
        self.hits = hits or LimitHits()
        self._lock = threading.Lock()
        self._sources: dict[str, _Source] = {}
        self._owned: dict[str, int] = {}  # identity -> sources it feeds
        self._indexer = SliceIndexer(slice_names)
        self.period_complete = threading.Event()
        self._trigger_time: float | None = None
        self._samples = 0

    @property
    def expiry_s(self) -> float:
        """Silence after which a source is forgotten (never before it is stale)."""
        return max(self.limits.source_expiry_s, self.stale_after_s)

    @property
    def slice_names(self) -> tuple[str, ...]:
        return self._indexer.slice_names

    @property
    def telemetry_complete(self) -> bool:
        """Every live source has ended its period since the last :meth:`collect`."""
        return self._trigger_time is not None

    def rebind(self, slice_names: Sequence[str]) -> None:
        """Switch to a new policy's slices, keeping the rates of slices that stay."""
        new = SliceIndexer(slice_names)
        with self._lock:
            old = self._indexer.slice_names
            keep = [(i, old.index(n)) for i, n in enumerate(new.slice_names) if n in old]
            for src in self._sources.values():
                rates = np.full((len(new.slice_names), 2), np.nan)
                for i, j in keep:
                    rates[i] = src.rates[j]
                src.rates = rates
            self._indexer = new

    def check_rows(self, n: int) -> None:
        """Refuse (``batch_rows``) a batch of more than ``Limits.batch_rows`` rows."""
        if n > self.limits.batch_rows:
            raise self.hits.hit(
                "batch_rows", f"batch of {n} slices; at most {self.limits.batch_rows}"
            )

    def ingest(
        self,
        source_id: str,
        slices: Sequence[str] | npt.NDArray[np.int64],
        dl_bps: npt.NDArray[np.float64],
        ul_bps: npt.NDArray[np.float64],
        end_of_period: bool = True,
        table: tuple[str, ...] | None = None,
        owner: str | None = None,
    ) -> int:
        """Validate and store one batch; returns the number of slice samples.

        ``slices`` are slice names, or (with ``table``) integer indices into
        ``table``, a stream's slice table of names. A slice named more than once
        gets the sum. ``owner``: the identity feeding a new source (counted
        against ``sources_per_identity``). Raises InvalidInput / NotFound /
        LimitExceeded and then stores nothing.
        """
        n = len(slices)
        self.check_rows(n)
        if len(dl_bps) != n or len(ul_bps) != n:
            raise InvalidInput(
                f"columns differ in length: {n} slices, {len(dl_bps)} dl_bps, {len(ul_bps)} ul_bps"
            )
        check_rates("dl_bps", dl_bps)
        check_rates("ul_bps", ul_bps)
        for _ in range(2):  # retry once if the policy changed between indexing and locking
            indexer = self._indexer
            idx: npt.NDArray[np.intp] | slice
            if table is None:
                idx, dups = indexer.indices(cast(Sequence[str], slices))
            else:
                idx, dups = indexer.from_table(table, np.asarray(slices))
            dl, ul = dl_bps, ul_bps
            if dups:  # (never a slice: a run of consecutive slices has no duplicates)
                assert not isinstance(idx, slice)
                idx, where = np.unique(idx, return_inverse=True)
                dl = np.bincount(where, weights=dl_bps, minlength=len(idx)).astype(np.float64)
                ul = np.bincount(where, weights=ul_bps, minlength=len(idx)).astype(np.float64)
                check_rates("dl_bps (a slice's sum)", dl)  # the value stored is a rate too
                check_rates("ul_bps (a slice's sum)", ul)
            with self._lock:
                if indexer is not self._indexer:
                    continue
                self._store(source_id, owner, indexer, idx, n, dl, ul, end_of_period)
                return n
        raise InvalidInput("policy changed during ingestion; resend the batch")

    def _admit_source(self, source_id: str, owner: str | None, now: float) -> _Source:
        """A new source's row, or LimitExceeded (caller holds the lock)."""
        if len(self._sources) >= self.limits.sources:
            self._expire(now)
        if len(self._sources) >= self.limits.sources:
            raise self.hits.hit(
                "sources",
                f"{len(self._sources)} telemetry sources live, at most {self.limits.sources}; "
                f"{source_id[:64]!r} refused",
            )
        if owner is not None and self._owned.get(owner, 0) >= self.limits.sources_per_identity:
            self._expire(now)
            if self._owned.get(owner, 0) >= self.limits.sources_per_identity:
                raise self.hits.hit(
                    "sources_per_identity",
                    f"{owner[:64]!r} feeds {self.limits.sources_per_identity} sources already; "
                    f"{source_id[:64]!r} refused",
                )
        if owner is not None:
            self._owned[owner] = self._owned.get(owner, 0) + 1
        src = self._sources[source_id] = _Source(
            np.full((len(self._indexer.slice_names), 2), np.nan), now, owner=owner
        )
        return src

    def _expire(self, now: float) -> None:
        """Forget sources silent for longer than :attr:`expiry_s` (caller holds the lock)."""
        expiry = self.expiry_s
        gone = [k for k, s in self._sources.items() if now - s.last_seen > expiry]
        for k in gone:
            src = self._sources.pop(k)
            if src.owner is not None:
                left = self._owned[src.owner] - 1
                if left:
                    self._owned[src.owner] = left
                else:
                    del self._owned[src.owner]

    def _store(
        self,
        source_id: str,
        owner: str | None,
        indexer: SliceIndexer,
        idx: npt.NDArray[np.intp] | slice,
        n: int,
        dl_bps: npt.NDArray[np.float64],
        ul_bps: npt.NDArray[np.float64],
        end_of_period: bool,
    ) -> None:
        """Write one validated batch, ``idx`` without repeats (caller holds the lock)."""
        now = self.clock.monotonic()
        src = self._sources.get(source_id)
        if src is None:
            src = self._admit_source(source_id, owner, now)
        src.rates[idx, 0] = dl_bps
        src.rates[idx, 1] = ul_bps
        src.last_seen = now
        self._samples += n
        if end_of_period:
            src.ended = True
            if all(
                s.ended or now - s.last_seen > self.stale_after_s for s in self._sources.values()
            ):
                self._trigger_time = now
                self.period_complete.set()

    def collect(self) -> CollectedTelemetry:
        """Merge live sources' latest rates and start a new period."""
        with self._lock:
            now = self.clock.monotonic()
            self._expire(now)
            names = self._indexer.slice_names
            n_slices = len(names)
            live = [s for s in self._sources.values() if now - s.last_seen <= self.stale_after_s]
            stale_names = tuple(
                k for k, s in self._sources.items() if now - s.last_seen > self.stale_after_s
            )
            stale_rates = [
                s.rates for s in self._sources.values() if now - s.last_seen > self.stale_after_s
            ]
            live_rates = (
                np.stack([s.rates for s in live]) if live else np.full((1, n_slices, 2), np.nan)
            )
            stale_seen = (
                np.stack([~np.isnan(r).all(axis=1) for r in stale_rates]).any(axis=0)
                if stale_rates
                else np.zeros(n_slices, dtype=bool)
            )
            for s in self._sources.values():
                s.ended = False
            trigger, self._trigger_time = self._trigger_time, None
            samples, self._samples = self._samples, 0
            self.period_complete.clear()
        seen = ~np.isnan(live_rates)
        measured = np.where(
            seen.any(axis=0), np.max(np.where(seen, live_rates, -np.inf), axis=0), np.nan
        )
        live_seen = seen.any(axis=(0, 2))
        return CollectedTelemetry(
            names, measured, stale_seen & ~live_seen, stale_names, len(live), trigger, samples
        )

    def latest(self, source_id: str, slices: Sequence[str]) -> npt.NDArray[np.float64]:
        """The source's latest ``(len(slices), 2)`` bit/s for these slices, NaN where none."""
        idx, _ = self._indexer.indices(slices)
        with self._lock:
            src = self._sources.get(source_id)
            if src is None or src.rates.shape[0] != len(self._indexer.slice_names):
                return np.full((len(idx), 2), np.nan)
            return src.rates[idx].copy()

    def sources(self) -> dict[str, float]:
        """Source id -> seconds since it was last heard."""
        now = self.clock.monotonic()
        with self._lock:
            return {k: now - s.last_seen for k, s in self._sources.items()}
