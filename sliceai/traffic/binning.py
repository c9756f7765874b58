"""Turn a stream of measurement rows into dense trace chunks, in bounded memory.

Readers parse their input in blocks and hand each block's rows to an
:class:`IntervalBinner` as arrays: interval index, slice index, direction,
value, plus the row's position for error messages. The binner keeps only the
rows of intervals not yet emitted and yields :class:`Trace` chunks of
``chunk_intervals`` consecutive intervals as soon as later data shows them
complete. Input must be in non-decreasing time order up to that window: a
row for an interval already emitted is an error.

How rows of one (interval, slice, direction) cell combine is the ``mode``:

``"unique"``  at most one row per cell, its value is the cell (long CSV);
              a cell without a row is NaN (missing).
``"rate"``    rates (bit/s) of several UEs or cells: summed per report time and
              averaged over the report times seen in the interval; a cell
              without rows in an interval that has rows is 0, an interval
              without any row is NaN.
``"volume"``  bits: summed and divided by ``interval_s``; same gaps as "rate".
``"packets"`` bits of captured packets: like "volume", but a silent interval
              is 0 (a capture sees silence), never NaN.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from sliceai.traffic.trace import Trace

BinMode = Literal["unique", "rate", "volume", "packets"]
DEFAULT_CHUNK_INTERVALS = 4096


class RowProblem(Exception):
    """Raised by the binner for one bad row; the reader turns it into a TraceReadError."""

    def __init__(self, row_tag: int, message: str) -> None:
        super().__init__(message)
        self.row_tag = row_tag
        self.message = message


@dataclass
class _Rows:
    index: npt.NDArray[np.int64]  # (n,) interval index from the trace start
    cell: npt.NDArray[np.int64]  # (n,) slice * 2 + direction
    value: npt.NDArray[np.float64]  # (n,) bit/s or bits, see mode
    time: npt.NDArray[np.float64]  # (n,) report time, epoch s ("rate" mode)
    tag: npt.NDArray[np.int64]  # (n,) line / packet number for messages
    extras: npt.NDArray[np.float64]  # (n_extras, n)


class IntervalBinner:
    """Accumulate rows and emit dense chunks; see the module docstring for ``mode``.

    ``start`` (epoch s) is the start of interval 0; ``n_slices`` the width of the
    trace; ``extras`` names extra per-cell values kept like ``"unique"`` values.
    """

    def __init__(
        self,
        start: float,
        interval_s: float,
        slices: tuple[str, ...],
        mode: BinMode,
        *,
        chunk_intervals: int = DEFAULT_CHUNK_INTERVALS,
        extras: tuple[str, ...] = (),
        directions_present: tuple[bool, bool] = (True, True),
    ) -> None:
        if chunk_intervals < 1:
            raise ValueError("chunk_intervals must be at least 1")
        self.start = float(start)
        self.interval_s = float(interval_s)
        self.slices = slices
        self.mode = mode
        self.chunk_intervals = chunk_intervals
        self.extras = extras
        self.directions_present = directions_present
        self._n_cells = 2 * len(slices)
        self._emitted = 0  # intervals [0, _emitted) are out already
        self._seen_max = -1  # highest interval index seen so far
        self._pending: list[_Rows] = []
        # the smallest interval index a future row may have (merging several sorted inputs);
        # intervals before it are complete even when seen_max has not moved far enough
        self.horizon: int | None = None

    @property
    def emitted_intervals(self) -> int:
        return self._emitted

    def interval_index(self, times: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        """Interval index of epoch times (s); a time on a boundary belongs to the later one."""
        rel = (times - self.start) / self.interval_s
        return np.floor(rel + 1e-6).astype(np.int64)

    def add(
        self,
        index: npt.NDArray[np.int64],
        slice_idx: npt.NDArray[np.int64],
        direction: npt.NDArray[np.int64],
        value: npt.NDArray[np.float64],
        tag: npt.NDArray[np.int64],
        *,
        time: npt.NDArray[np.float64] | None = None,
        extras: npt.NDArray[np.float64] | None = None,
    ) -> Iterator[Trace]:
        """Take one block of rows (arrays ``(n,)``, extras ``(n_extras, n)``); yield done chunks.

        Raises :class:`RowProblem` naming the tag of the first bad row.
        """
        n = len(index)
        if n == 0:
            return
        early = index < self._emitted
        if early.any():
            bad = int(np.argmax(early))
            raise RowProblem(
                int(tag[bad]),
                "row is out of time order: its interval was already complete "
                "(sort the input by time)",
            )
        rows = _Rows(
            index.astype(np.int64, copy=False),
            slice_idx.astype(np.int64, copy=False) * 2 + direction.astype(np.int64, copy=False),
            value.astype(np.float64, copy=False),
            np.zeros(n) if time is None else time,
            tag,
            np.zeros((0, n)) if extras is None else extras,
        )
        self._pending.append(rows)
        self._seen_max = max(self._seen_max, int(index.max()))
        yield from self._ready()

    def _ready(self) -> Iterator[Trace]:
        limit = self._seen_max if self.horizon is None else min(self._seen_max, self.horizon)
        while limit - self._emitted >= self.chunk_intervals:
            yield self._emit(self._emitted + self.chunk_intervals)

    def extend(self, last_index: int) -> Iterator[Trace]:
        """The input covers intervals up to ``last_index`` even where no row landed (a capture
        whose last packets are unmatched); yields chunks that this completes."""
        self._seen_max = max(self._seen_max, last_index)
        yield from self._ready()

    def finish(self) -> Iterator[Trace]:
        """Emit everything still pending (the input has ended)."""
        while self._emitted <= self._seen_max:
            yield self._emit(min(self._emitted + self.chunk_intervals, self._seen_max + 1))

    def _take(self, stop: int) -> _Rows:
        """Remove and return the pending rows of intervals before ``stop``."""
        taken: list[_Rows] = []
        kept: list[_Rows] = []
        for rows in self._pending:
            below = rows.index < stop
            if below.all():
                taken.append(rows)
            elif below.any():
                taken.append(_select(rows, below))
                kept.append(_select(rows, ~below))
            else:
                kept.append(rows)
        self._pending = kept
        if not taken:
            empty_i = np.zeros(0, np.int64)
            return _Rows(
                empty_i, empty_i, np.zeros(0), np.zeros(0), empty_i, np.zeros((len(self.extras), 0))
            )
        return _Rows(
            np.concatenate([r.index for r in taken]),
            np.concatenate([r.cell for r in taken]),
            np.concatenate([r.value for r in taken]),
            np.concatenate([r.time for r in taken]),
            np.concatenate([r.tag for r in taken]),
            np.concatenate([r.extras for r in taken], axis=1),
        )

    def _emit(self, stop: int) -> Trace:
        first = self._emitted
        n_int = stop - first
        rows = self._take(stop)
        flat = (rows.index - first) * self._n_cells + rows.cell
        size = n_int * self._n_cells
        extras: dict[str, npt.NDArray[np.float64]] = {}
        if self.mode == "unique":
            counts = np.bincount(flat, minlength=size)
            if counts.max(initial=0) > 1:
                dup = _first_duplicate(flat)
                raise RowProblem(
                    int(rows.tag[dup]),
                    "duplicate row: this slice and direction already has a value",
                )
            load = np.full(size, np.nan)
            load[flat] = rows.value
            for k, name in enumerate(self.extras):
                arr = np.full(size, np.nan)
                arr[flat] = rows.extras[k]
                extras[name] = arr.reshape(n_int, -1, 2)
        else:
            sums: npt.NDArray[np.float64] = (
                np.bincount(flat, weights=rows.value, minlength=size)
                .astype(np.float64, copy=False)
                .reshape(n_int, -1)
            )
            if self.mode == "rate":
                # average over the distinct report times of each interval
                pairs = np.unique(np.stack([rows.index, rows.time.view(np.int64)]), axis=1)
                n_times = np.bincount(pairs[0] - first, minlength=n_int).astype(np.float64)
                sums /= np.maximum(n_times, 1.0)[:, None]
            else:
                sums /= self.interval_s
            if self.mode != "packets":
                has_rows = np.bincount(rows.index - first, minlength=n_int) > 0
                sums[~has_rows] = np.nan
            load = sums.reshape(-1)
        load3 = load.reshape(n_int, len(self.slices), 2)
        for d, present in enumerate(self.directions_present):
            if not present:
                load3[:, :, d] = np.nan
        self._emitted = stop
        return Trace(
            self.start + first * self.interval_s, self.interval_s, self.slices, load3, extras
        )


def _select(rows: _Rows, mask: npt.NDArray[np.bool_]) -> _Rows:
    return _Rows(
        rows.index[mask],
        rows.cell[mask],
        rows.value[mask],
        rows.time[mask],
        rows.tag[mask],
        rows.extras[:, mask],
    )


def _first_duplicate(flat: npt.NDArray[np.int64]) -> int:
    """Position (in input order) of the first row whose cell appeared before."""
    order = np.argsort(flat, kind="stable")
    same = flat[order][1:] == flat[order][:-1]
    return int(order[1:][same].min())
