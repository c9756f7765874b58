"""Who is calling, what they may do, and how often.

Identity comes from the client certificate under mutual TLS. A certificate
carries its role and identity in a URI subject alternative name::

    spiffe://sliceai/<role>/<identity>

with ``<role>`` one of ``controller``, ``mec-app``, ``admin`` and
``<identity>`` 1..128 characters of ``[A-Za-z0-9._:-]``. For a ``mec-app`` the
identity is its MEC ``appInsId``: it may see and change only grants with that
``app_ins_id``. A certificate without such a SAN gets the role ``anonymous``
(read-only: forecasts and plan watching).

Without TLS the server listens on loopback only, and every caller is the local
administrator (``admin``/``local``). With server-only TLS (no client CA) callers
are ``anonymous``, unless the server listens on loopback.

Method permissions are in :data:`METHOD_ROLES`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from sliceai.engine import LOCAL_ADMIN, Caller

ROLES = ("controller", "mec-app", "admin")
SAN_PATTERN = re.compile(r"^spiffe://sliceai/(controller|mec-app|admin)/([A-Za-z0-9._:-]{1,128})$")
ANYONE = frozenset({"controller", "mec-app", "admin", "anonymous"})

METHOD_ROLES: Mapping[str, frozenset[str]] = {
    "ControllerService.Connect": frozenset({"controller", "admin"}),
    "MecService.PushTelemetry": frozenset({"controller", "admin"}),
    "MecService.GetForecast": ANYONE,
    "MecService.RequestBandwidth": frozenset({"mec-app", "admin"}),
    "MecService.ModifyBandwidth": frozenset({"mec-app", "admin"}),
    "MecService.ReleaseBandwidth": frozenset({"mec-app", "admin"}),
    "MecService.ListBandwidth": frozenset({"mec-app", "admin"}),
    "MecService.WatchAllocations": ANYONE,
    "AdminService.GetPolicy": frozenset({"controller", "admin"}),
    "AdminService.ApplyPolicy": frozenset({"admin"}),
    "AdminService.ListPolicyVersions": frozenset({"admin"}),
}


def spiffe_uri(role: str, identity: str) -> str:
    """The SAN URI that gives a certificate ``role`` and ``identity``."""
    uri = f"spiffe://sliceai/{role}/{identity}"
    if not SAN_PATTERN.match(uri):
        raise ValueError(f"bad role or identity: {role!r}, {identity!r}")
    return uri


def caller_from_auth_context(auth: Mapping[str, Any]) -> Caller:
    """Role and identity from a gRPC auth context of a TLS peer."""
    for value in auth.get("x509_subject_alternative_name", ()):
        m = SAN_PATTERN.match(value.decode("utf-8", "replace"))
        if m:
            return Caller(m.group(1), m.group(2))
    return Caller("anonymous", "")


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Token bucket per client key: ``rate`` tokens/s, up to ``burst`` stored.

    ``clock`` gives the time in seconds (``time.monotonic`` unless a test steps its own).
    """

    def __init__(
        self,
        rate: float,
        burst: float,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, cost: float = 1.0) -> bool:
        now = self._clock()
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                if len(self._buckets) >= self.max_clients:
                    self._buckets.clear()
                b = self._buckets[key] = _Bucket(self.burst, now)
            b.tokens = min(self.burst, b.tokens + (now - b.stamp) * self.rate)
            b.stamp = now
            if b.tokens < cost:
                return False
            b.tokens -= cost
            return True


class Authorizer:
    """Resolves the caller of an RPC and enforces role and rate limits."""

    def __init__(self, mutual_tls: bool, loopback: bool, limiter: RateLimiter) -> None:
        self.mutual_tls = mutual_tls
        self.loopback = loopback
        self.limiter = limiter

    def caller(self, context: grpc.ServicerContext) -> Caller:
        if self.mutual_tls:
            return caller_from_auth_context(context.auth_context())
        return LOCAL_ADMIN if self.loopback else Caller("anonymous", "")

    def rate_key(self, caller: Caller, context: grpc.ServicerContext) -> str:
        if caller.identity and caller.identity != "local":
            return f"{caller.role}/{caller.identity}"
        return context.peer()

    def check(self, context: grpc.ServicerContext, method: str) -> Caller:
        """The caller, after the role and rate checks; aborts the RPC otherwise."""
        caller = self.caller(context)
        allowed = METHOD_ROLES[method]
        if caller.role not in allowed:
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{method} needs role {' or '.join(sorted(allowed))}; caller has {caller.role!r}",
            )
        if not self.limiter.allow(self.rate_key(caller, context)):
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "rate limit exceeded; slow down")
        return caller
