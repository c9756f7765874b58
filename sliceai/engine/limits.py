"""What one caller may take of the service: every limit in one :class:`Limits`.

The engine enforces the request sizes, the telemetry sources and the replan
pacing; the API (:mod:`sliceai.api.limits`) the streams, the Hello deadline and
the worker pool. A refusal raises :class:`LimitExceeded` (RESOURCE_EXHAUSTED on
the wire) and is counted under the limit's name in :class:`LimitHits`, which the
service's metrics export as ``sliceai_limit_hits_total{limit}``.
``sliceai serve --limit NAME=VALUE`` sets any field.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sliceai.engine.errors import Exhausted

#: Wire bytes a KPM report row may take (a record's name, slice, value and framing, with
#: room to spare) in the ``PushTelemetry`` request size limit.
BYTES_PER_ROW = 256
#: The largest policy text ``ApplyPolicy`` takes (:data:`sliceai.policy.loader.MAX_POLICY_BYTES`).
POLICY_BYTES = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Per-service and per-identity limits; the defaults suit a site of tens of switches.

    An *identity* is a certificate's ``role/identity``; anonymous callers count per
    connection (peer). The local administrator of plaintext loopback is one identity
    for every local caller, so the per-identity stream limit does not apply to it.
    """

    #: Concurrent ``ControllerService.Connect`` streams, all callers: watchers never take these.
    controller_streams: int = 32
    #: Concurrent ``WatchAllocations`` streams, all callers.
    watch_streams: int = 32
    #: Of ``watch_streams``, what anonymous callers may hold together.
    anonymous_streams: int = 8
    #: Concurrent streams of one identity (or one anonymous connection).
    streams_per_identity: int = 8
    #: Worker threads kept for unary calls and health beyond the streams' (pool size =
    #: controller_streams + watch_streams + unary_workers).
    unary_workers: int = 32
    #: A ``Connect`` that sends no Hello within this is ended (s).
    hello_timeout_s: float = 5.0
    #: Slices named in one ``GetForecast`` (repeats count).
    forecast_slices: int = 64
    #: Intervals ahead in one ``GetForecast``.
    forecast_horizon: int = 64
    #: ``GetForecast`` calls computed at once; more are refused.
    forecast_concurrency: int = 4
    #: Rows in one telemetry batch or KPM report (and names in a Hello's slice table).
    batch_rows: int = 4096
    #: Bytes of one unary request, refused before it is decoded; ``PushTelemetry`` may
    #: also take :data:`BYTES_PER_ROW` per ``batch_rows`` and ``ApplyPolicy`` a policy's
    #: 1 MiB (:meth:`request_bytes_for`).
    request_bytes: int = 64 << 10
    #: Telemetry sources kept at once (a new one past this is refused).
    sources: int = 1024
    #: Telemetry sources one identity may feed through ``PushTelemetry``.
    sources_per_identity: int = 64
    #: A source silent this long is forgotten (s); at least the staleness timeout.
    source_expiry_s: float = 60.0
    #: Least time between two plans that grant or policy changes trigger (s).
    replan_min_gap_s: float = 0.5

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not value > 0:
                raise ValueError(f"limit {f.name} must be positive, got {value!r}")
        if self.anonymous_streams > self.watch_streams:
            raise ValueError("limit anonymous_streams must not exceed watch_streams")

    @property
    def workers(self) -> int:
        """Size of the gRPC worker pool: every stream's thread plus ``unary_workers``."""
        return self.controller_streams + self.watch_streams + self.unary_workers

    def request_bytes_for(self, method: str) -> int:
        """The most bytes a unary request to ``method`` ("Service.Method") may have."""
        if method == "MecService.PushTelemetry":
            return max(self.request_bytes, BYTES_PER_ROW * self.batch_rows)
        if method == "AdminService.ApplyPolicy":
            return self.request_bytes + POLICY_BYTES
        return self.request_bytes

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def with_settings(self, pairs: Iterable[str]) -> Limits:
        """A copy with ``NAME=VALUE`` settings applied; ValueError naming a bad one."""
        changes: dict[str, int | float] = {}
        types = {f.name: f.type for f in dataclasses.fields(self)}
        for pair in pairs:
            name, sep, text = pair.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in types:
                raise ValueError(f"{pair!r}: expected NAME=VALUE, NAME one of {', '.join(types)}")
            try:
                changes[name] = int(text) if types[name] in ("int", int) else float(text)
            except ValueError:
                raise ValueError(f"{pair!r}: {text!r} is not a number") from None
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


class LimitExceeded(Exhausted):
    """A request refused by limit ``limit`` (RESOURCE_EXHAUSTED)."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


class LimitHits:
    """Counts refusals per limit name; ``listeners`` hear each (the metrics)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.listeners: list[Callable[[str], None]] = []

    def hit(self, limit: str, message: str) -> LimitExceeded:
        """Count a refusal; returns the error to raise."""
        with self._lock:
            self.counts[limit] = self.counts.get(limit, 0) + 1
        for listener in list(self.listeners):
            listener(limit)
        return LimitExceeded(limit, message)

    def count(self, limit: str) -> int:
        with self._lock:
            return self.counts.get(limit, 0)
