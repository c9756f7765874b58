"""The API's share of the limits: streams per identity, per role and per kind.

Every field is in :class:`sliceai.engine.limits.Limits` (re-exported here);
``sliceai serve --limit NAME=VALUE`` sets any. Long-lived streams are the one
resource a caller holds, so :class:`StreamGate` admits each before it waits for
anything (a ``Connect`` is admitted before its Hello, so Hello-less streams count
too) and:

- ``Connect`` streams and ``WatchAllocations`` streams have separate budgets
  (``controller_streams``, ``watch_streams``): watchers never take a controller's;
- anonymous callers share ``anonymous_streams`` of the watch budget;
- one identity holds at most ``streams_per_identity`` (anonymous callers count per
  connection). Not the local administrator of plaintext loopback: every local
  caller is that one identity, so only the budgets above apply to it.

The gRPC pool has ``Limits.workers`` threads, more than both stream budgets together,
so unary calls and health always find a thread. A refusal is LimitExceeded
(RESOURCE_EXHAUSTED), counted in the engine's ``limit_hits``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sliceai.engine import LOCAL_ADMIN, Caller
from sliceai.engine.limits import LimitExceeded, LimitHits, Limits
from sliceai.usage import UsageError

__all__ = [
    "CONTROLLER",
    "WATCH",
    "LimitExceeded",
    "LimitHits",
    "Limits",
    "StreamGate",
    "limits_from_flags",
]

CONTROLLER = "controller"  # ControllerService.Connect
WATCH = "watch"  # MecService.WatchAllocations


class StreamGate:
    """Counts open streams by kind, anonymous role and identity key; thread-safe."""

    def __init__(self, limits: Limits, hits: LimitHits) -> None:
        self.limits = limits
        self.hits = hits
        self._lock = threading.Lock()
        self.open = {CONTROLLER: 0, WATCH: 0}
        self.anonymous = 0
        self.by_key: dict[str, int] = {}

    def _budget(self, kind: str) -> int:
        return self.limits.controller_streams if kind == CONTROLLER else self.limits.watch_streams

    def enter(self, kind: str, caller: Caller, key: str) -> None:
        """Admit one stream of ``kind`` for ``caller`` (identity ``key``) or raise."""
        limits = self.limits
        anonymous = caller.role == "anonymous"
        with self._lock:
            if self.open[kind] >= self._budget(kind):
                name, why = f"{kind}_streams", f"at most {self._budget(kind)} {kind} streams"
            elif anonymous and self.anonymous >= limits.anonymous_streams:
                name, why = "anonymous_streams", f"at most {limits.anonymous_streams} anonymous"
            elif caller != LOCAL_ADMIN and self.by_key.get(key, 0) >= limits.streams_per_identity:
                name, why = (
                    "streams_per_identity",
                    (f"at most {limits.streams_per_identity} streams per caller"),
                )
            else:
                self.open[kind] += 1
                self.anonymous += anonymous
                self.by_key[key] = self.by_key.get(key, 0) + 1
                return
        raise self.hits.hit(name, f"{why} at once; close one or retry later")

    def leave(self, kind: str, caller: Caller, key: str) -> None:
        with self._lock:
            self.open[kind] -= 1
            self.anonymous -= caller.role == "anonymous"
            left = self.by_key[key] - 1
            if left:
                self.by_key[key] = left
            else:
                del self.by_key[key]

    @contextmanager
    def held(self, kind: str, caller: Caller, key: str) -> Iterator[None]:
        """``enter`` ... ``leave`` around a stream's life (enter's refusal propagates)."""
        self.enter(kind, caller, key)
        try:
            yield
        finally:
            self.leave(kind, caller, key)


def limits_from_flags(pairs: list[str] | None) -> Limits:
    """``serve --limit NAME=VALUE`` settings over the defaults; UsageError for a bad one."""
    try:
        return Limits().with_settings(pairs or ())
    except ValueError as exc:
        raise UsageError(f"--limit {exc}") from None
