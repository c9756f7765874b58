"""Who is calling, what they may do, and how often.

Identity comes from the client certificate under mutual TLS, and only from its
URI subject alternative name (DNS names, e-mail names and the subject are never
read). Like a SPIFFE X.509-SVID, the certificate carries exactly one URI SAN::

    spiffe://sliceai/<role>/<identity>

with ``<role>`` one of ``controller``, ``mec-app``, ``admin`` and
``<identity>`` 1..128 characters of ``[A-Za-z0-9._:-]``. For a ``mec-app`` the
identity is its MEC ``appInsId``: it may see and change only grants with that
``app_ins_id``. A certificate without such an identity (no SAN, no URI SAN,
several URI SANs, another trust domain, an unknown role, a malformed id) is
refused with UNAUTHENTICATED, unless the server runs with ``allow_anonymous``
(``sliceai serve --allow-anonymous``): then its caller is ``anonymous``
(read-only: forecasts and plan watching).

Without TLS the server listens on loopback only, and every caller is the local
administrator (``admin``/``local``). With server-only TLS (no client CA) callers
on loopback are that administrator too; off loopback they are ``anonymous``,
which the server accepts only with ``allow_anonymous``.

Permissions, role x RPC, are written once, in :data:`METHOD_ROLES`.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from cryptography import x509

from sliceai.engine import LOCAL_ADMIN, Caller

log = logging.getLogger(__name__)

ROLES = ("controller", "mec-app", "admin")
TRUST_DOMAIN = "spiffe://sliceai/"
SAN_PATTERN = re.compile(r"^spiffe://sliceai/(controller|mec-app|admin)/([A-Za-z0-9._:-]{1,128})$")
ANYONE = frozenset({"controller", "mec-app", "admin", "anonymous"})

#: Role x RPC: the roles each RPC admits (``anonymous`` only with ``allow_anonymous``).
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


class IdentityError(ValueError):
    """A client certificate without a usable identity; ``str`` says why."""


def identity_of_certificate(cert: x509.Certificate) -> Caller:
    """Role and identity from the certificate's one URI SAN; :class:`IdentityError` otherwise."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise IdentityError("the certificate has no subject alternative name") from None
    except ValueError as exc:  # a malformed extension
        raise IdentityError(f"unreadable subject alternative name: {exc}") from None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if not uris:
        raise IdentityError("the certificate has no URI subject alternative name")
    if len(uris) > 1:
        raise IdentityError(
            f"the certificate has {len(uris)} URI subject alternative names; "
            "an identity certificate carries exactly one"
        )
    uri = uris[0]
    m = SAN_PATTERN.match(uri)
    if m:
        return Caller(m.group(1), m.group(2))
    shown = repr(uri[:160])
    if not uri.startswith(TRUST_DOMAIN):
        raise IdentityError(f"URI SAN {shown} is not in the trust domain {TRUST_DOMAIN}")
    role = uri[len(TRUST_DOMAIN) :].split("/", 1)[0]
    if role not in ROLES:
        raise IdentityError(f"URI SAN {shown} names unknown role {role[:40]!r}")
    raise IdentityError(f"URI SAN {shown} is not spiffe://sliceai/<role>/<id>")


@functools.lru_cache(maxsize=1024)
def _identity_of_pem(pem: bytes) -> Caller | str:
    """The caller of a peer certificate, or why it has none (cached: once per certificate)."""
    try:
        return identity_of_certificate(x509.load_pem_x509_certificate(pem))
    except IdentityError as exc:
        return str(exc)
    except ValueError as exc:
        return f"unreadable certificate: {exc}"


def caller_from_auth_context(auth: Mapping[str, Any]) -> Caller:
    """Role and identity of a mutual-TLS peer from its certificate (gRPC has verified it).

    Raises :class:`IdentityError` when the certificate carries no valid identity.
    """
    pems = auth.get("x509_pem_cert", ())
    if len(pems) != 1:
        raise IdentityError("no client certificate")
    found = _identity_of_pem(bytes(pems[0]))
    if isinstance(found, str):
        raise IdentityError(found)
    return found


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
    """Resolves the caller of an RPC and enforces identity, role and rate limits."""

    def __init__(
        self,
        mutual_tls: bool,
        loopback: bool,
        limiter: RateLimiter,
        allow_anonymous: bool = False,
    ) -> None:
        self.mutual_tls = mutual_tls
        self.loopback = loopback
        self.limiter = limiter
        self.allow_anonymous = allow_anonymous

    def caller(self, context: grpc.ServicerContext) -> Caller:
        """Who calls; raises :class:`IdentityError` for a caller the server does not accept."""
        return self.caller_of(context.auth_context() if self.mutual_tls else {})

    def caller_of(self, auth: Mapping[str, Any]) -> Caller:
        """Who calls, from the peer's auth context (``x509_pem_cert``: its verified PEM
        certificate, as gRPC gives it; the MEC 015 REST server builds the same from TLS)."""
        if self.mutual_tls:
            try:
                return caller_from_auth_context(auth)
            except IdentityError:
                if self.allow_anonymous:
                    return Caller("anonymous", "")
                raise
        if self.loopback:
            return LOCAL_ADMIN
        if self.allow_anonymous:
            return Caller("anonymous", "")
        raise IdentityError("no client certificate (server-only TLS)")

    def authenticate(self, context: grpc.ServicerContext) -> Caller:
        """The caller; aborts the RPC with UNAUTHENTICATED when it has no valid identity."""
        try:
            return self.caller(context)
        except IdentityError as exc:
            log.info("refused %s: %s", context.peer(), exc)
            context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                f"no valid identity in the client certificate: {exc}",
            )
            raise  # abort raises; this line only tells the type checker

    def rate_key(self, caller: Caller, context: grpc.ServicerContext) -> str:
        if caller.identity and caller.identity != "local":
            return f"{caller.role}/{caller.identity}"
        return context.peer()

    def check(self, context: grpc.ServicerContext, method: str) -> Caller:
        """The caller, after the identity, role and rate checks; aborts the RPC otherwise."""
        caller = self.authenticate(context)
        allowed = METHOD_ROLES[method]
        if caller.role not in allowed:
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{method} needs role {' or '.join(sorted(allowed))}; caller has {caller.role!r}",
            )
        if not self.limiter.allow(self.rate_key(caller, context)):
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "rate limit exceeded; slow down")
        return caller
