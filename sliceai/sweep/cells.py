"""Sweep cells: one (trace, policy, allocator) replay each, its result file, its table rows.

No Ray here: a :class:`CellRunner` runs cells one after another in one process, in each
Ray worker of :mod:`sliceai.sweep.runner` (one per core) and in :func:`run_here` (the
benchmark's peer); :func:`run_cell` is one cell on a fresh runner. A cell's replay is
:func:`sliceai.replay.replay` of one allocator on the trace's chunks as
:func:`sliceai.traffic.open_trace` reads them (long CSV, Parquet, ...), as ``sliceai
replay`` does. A runner keeps the last traces it read (their chunks, up to
``max_trace_bytes`` each) and the policies, so a worker reads a trace once for its cells
rather than twice per cell; the model is loaded once per process
(:func:`sliceai.replay.planned.model_forecaster`).

Layout under the output directory, one folder per cell (Hive-style names)::

    cells/trace=NAME/policy=NAME/allocator=NAME/result.json   # written last, atomically
    cells/trace=NAME/policy=NAME/allocator=NAME/error.json    # a failed cell (retried on resume)

A cell is finished when its ``result.json`` exists and names the same inputs (paths,
the trace's size and modification time, the policy text's SHA-256); finished cells are
skipped when a sweep is run again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import sys
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

from sliceai.policy import Policy, load_policy
from sliceai.replay import replay
from sliceai.replay.engine import directions_with_demand
from sliceai.replay.planned import model_forecaster
from sliceai.replay.report import report_json
from sliceai.replay.summary import over_risk
from sliceai.traffic import Trace, open_trace

RESULT = "result.json"
ERROR = "error.json"
#: Rough relative cost of a cell by allocator: the slow ones are submitted first, so
#: the last cells to finish are short ones.
WEIGHT = {"sliceai": 10.0, "oracle": 6.0, "rolling-quantile": 3.0}
METRICS = (
    "violation_rate",
    "violation_rate_servable",
    "unservable_intervals",
    "unserved_bits",
    "p50_delay_ms",
    "p99_delay_ms",
    "overprovisioning",
    "reconfigurations",
    "cost",
    "offered_bits",
    "served_bits",
    "overprovisioned_bits",
)


@dataclass(frozen=True)
class Cell:
    trace: str  # path of the trace file
    policy: str  # path of the policy YAML
    allocator: str
    trace_label: str
    policy_label: str

    @property
    def key(self) -> str:
        """The cell's folder under ``cells/``."""
        return f"trace={self.trace_label}/policy={self.policy_label}/allocator={self.allocator}"

    @property
    def weight(self) -> float:
        return WEIGHT.get(self.allocator, 1.0)


def _labels(paths: Sequence[Path]) -> list[str]:
    """File stems made safe for a folder name; a short hash where two stems collide."""
    stems = [re.sub(r"[^A-Za-z0-9._-]+", "_", p.stem) or "_" for p in paths]
    out = []
    for path, stem in zip(paths, stems, strict=True):
        if stems.count(stem) > 1:
            digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
            stem = f"{stem}-{digest}"
        out.append(stem)
    return out


def plan_cells(
    traces: Sequence[Path], policies: Sequence[Path], allocators: Sequence[str]
) -> list[Cell]:
    """Every (trace, policy, allocator), in that nesting order."""
    trace_labels, policy_labels = _labels(traces), _labels(policies)
    return [
        Cell(str(t), str(p), a, tl, pl)
        for t, tl in zip(traces, trace_labels, strict=True)
        for p, pl in zip(policies, policy_labels, strict=True)
        for a in allocators
    ]


def inputs_of(cell: Cell) -> dict[str, Any]:
    """What a finished cell's result depends on, to tell whether it is still valid."""
    trace = Path(cell.trace).stat()
    policy = hashlib.sha256(Path(cell.policy).read_bytes()).hexdigest()
    return {
        "trace_size": trace.st_size,
        "trace_mtime_ns": trace.st_mtime_ns,
        "policy_sha256": policy,
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """``data`` to ``path`` atomically (a temporary file beside it, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def finished(cell: Cell, out: Path) -> dict[str, Any] | None:
    """The cell's stored record if it finished on the same inputs, else None."""
    path = out / "cells" / cell.key / RESULT
    try:
        record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        same = record["cell"] == asdict(cell) and record["inputs"] == inputs_of(cell)
    except (OSError, ValueError, KeyError):
        return None
    return record if same and record.get("status") == "ok" else None


def error_record(cell: Cell, out: Path, error: str, seconds: float = 0.0) -> dict[str, Any]:
    """Record (and write as ``error.json``) a failed cell."""
    record = {"cell": asdict(cell), "status": "error", "error": error, "seconds": seconds}
    _write_json(out / "cells" / cell.key / ERROR, record)
    return record


class CellRunner:
    """Runs cells one after another in this process, keeping what they share.

    The chunks of the last ``max_traces`` traces read (a trace over ``max_trace_bytes``
    is streamed twice per cell instead, as one cell alone would) and every policy read,
    each keyed by what :func:`inputs_of` checks, so a file changed in between is read
    again. A replay never writes to a trace's arrays (they are read-only).
    """

    def __init__(self, max_traces: int = 2, max_trace_bytes: int = 256 << 20) -> None:
        self.max_traces = max_traces
        self.max_trace_bytes = max_trace_bytes
        self._traces: OrderedDict[tuple[Any, ...], tuple[list[Trace], tuple[bool, bool]]]
        self._traces = OrderedDict()
        self._too_big: set[tuple[Any, ...]] = set()
        self._policies: dict[tuple[str, str], Policy] = {}
        self.cells = 0
        self.trace_reads = 0
        self.seconds = 0.0

    def _policy(self, path: str, sha256: str) -> Policy:
        key = (path, sha256)
        if key not in self._policies:
            self._policies[key] = load_policy(path)
        return self._policies[key]

    def _chunks(self, key: tuple[Any, ...]) -> tuple[list[Trace], tuple[bool, bool]] | None:
        """The trace's chunks and its directions with demand, read once; None if too big."""
        if key in self._traces:
            self._traces.move_to_end(key)
            return self._traces[key]
        if self.max_traces < 1 or key in self._too_big:
            return None
        path, slices = key[0], key[-1]
        chunks, size = [], 0
        self.trace_reads += 1
        for chunk in open_trace(path, slices=slices):
            size += chunk.load_bps.nbytes + sum(a.nbytes for a in chunk.extras.values())
            if size > self.max_trace_bytes:
                self._too_big.add(key)
                return None
            chunks.append(chunk)
        found = (chunks, directions_with_demand(chunks))
        self._traces[key] = found
        while len(self._traces) > self.max_traces:
            self._traces.popitem(last=False)
        return found

    def run(self, cell: Cell, out: Path) -> dict[str, Any]:
        """Replay one cell, write its result (or error) under ``out``; its record.

        Never raises for a failing replay (unreadable trace, trace that does not fit the
        policy, allocator that fails): the error is the record.
        """
        t0 = time.perf_counter()
        out = Path(out)
        self.cells += 1
        try:
            inputs = inputs_of(cell)
            policy = self._policy(cell.policy, inputs["policy_sha256"])
            key = (cell.trace, inputs["trace_size"], inputs["trace_mtime_ns"], policy.slice_names)
            kept = self._chunks(key)
            if kept is None:  # too big to keep: stream it, once to look and once to replay
                self.trace_reads += 2
                present = directions_with_demand(open_trace(cell.trace, slices=policy.slice_names))
                source: Iterable[Trace] = open_trace(cell.trace, slices=policy.slice_names)
            else:
                source, present = kept
            result = replay(
                source,
                policy,
                [cell.allocator],
                trace_name=Path(cell.trace).name,
                demand_directions=present,
            )
            metrics = result.allocators[cell.allocator].metrics
            record = {
                "cell": asdict(cell),
                "inputs": inputs,
                "status": "ok",
                "seconds": time.perf_counter() - t0,
                "report": report_json(result),
                "over_risk": over_risk(metrics["slices"], policy),
                "risk": {s.name: s.risk for s in policy.slices},
            }
        except Exception as exc:
            seconds = time.perf_counter() - t0
            self.seconds += seconds
            return error_record(cell, out, f"{type(exc).__name__}: {exc}", seconds)
        _write_json(out / "cells" / cell.key / RESULT, record)
        (out / "cells" / cell.key / ERROR).unlink(missing_ok=True)
        self.seconds += time.perf_counter() - t0
        return record

    def stats(self) -> dict[str, Any]:
        """This process's id, the cells it ran, their seconds, the trace files it read and
        how many times it loaded a model (:func:`sliceai.replay.planned.model_forecaster`)."""
        return {
            "pid": os.getpid(),
            "cells": self.cells,
            "seconds": self.seconds,
            "trace_reads": self.trace_reads,
            "model_loads": model_forecaster.cache_info().misses,
        }


def run_cell(cell: Cell, out: Path) -> dict[str, Any]:
    """One cell on a fresh :class:`CellRunner` (see :meth:`CellRunner.run`)."""
    return CellRunner(max_traces=0).run(cell, out)


def run_here(cells: Iterable[Cell], out: Path, *, progress: bool = False) -> list[dict[str, Any]]:
    """Every cell in this process, one after another on one :class:`CellRunner` (finished
    ones read back)."""
    cells = list(cells)
    runner = CellRunner()
    records = []
    with tqdm(
        total=len(cells), desc="sweep", unit="cell", file=sys.stderr, disable=not progress
    ) as bar:
        for cell in cells:
            records.append(finished(cell, out) or runner.run(cell, out))
            bar.update()
    return records


def rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The table rows of one cell: its total (``slice`` = ``*``) then each slice."""
    cell = record["cell"]
    base = {
        "trace": cell["trace_label"],
        "policy": cell["policy_label"],
        "allocator": cell["allocator"],
        "status": record["status"],
        "error": record.get("error"),
        "seconds": record.get("seconds"),
    }
    if record["status"] != "ok":
        return [{**base, "slice": "*", **dict.fromkeys((*METRICS, "risk", "over_risk"))}]
    report = record["report"]
    metrics = report["allocators"][cell["allocator"]]
    over = set(record["over_risk"])
    out = [
        {
            **base,
            "slice": "*",
            **{m: metrics["total"].get(m) for m in METRICS},
            "risk": None,
            "over_risk": len(over),
        }
    ]
    for name, slice_metrics in metrics["slices"].items():
        out.append(
            {
                **base,
                "slice": name,
                **{m: slice_metrics.get(m) for m in METRICS},
                "risk": record["risk"].get(name),
                "over_risk": int(name in over),
            }
        )
    return out
