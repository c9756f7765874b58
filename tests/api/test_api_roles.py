"""The role matrix, cell by cell, with real certificates over mutual TLS on loopback.

:data:`sliceai.api.auth.METHOD_ROLES` is the one statement of who may call what.
Every (certificate, RPC) cell is called for real; a violation is a cell whose
outcome differs from the matrix (allowed: the RPC's normal answer; denied:
PERMISSION_DENIED; no valid identity: UNAUTHENTICATED, every RPC).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from cryptography import x509

from sliceai.api.auth import (
    METHOD_ROLES,
    ROLES,
    Authorizer,
    IdentityError,
    RateLimiter,
    identity_of_certificate,
)
from sliceai.api.client import SliceaiClient, bw_info
from sliceai.api.server import ServerConfigError, ServerSettings, SliceaiServer, TlsFiles
from sliceai.engine import Caller, Engine, StateStore
from sliceai.v1 import controller_pb2, mec_pb2

NoIdentity = dict[str, tuple[Any, str]]

OK = grpc.StatusCode.OK
DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
#: What an allowed call answers when its target does not exist (the harmless calls below).
ALLOWED_RESULT = {
    "MecService.ModifyBandwidth": grpc.StatusCode.NOT_FOUND,
    "MecService.ReleaseBandwidth": grpc.StatusCode.NOT_FOUND,
}
#: Client certificate -> the role its URI SAN gives.
ROLE_CERTS = {
    "controller": "controller",
    "app1": "mec-app",
    "admin": "admin",
    "app1-dns-admin": "mec-app",
}
READ_ONLY = {"MecService.GetForecast", "MecService.WatchAllocations"}


def _client(target: str, pki: Any, name: str) -> SliceaiClient:
    cert, key = pki.client(name)
    return SliceaiClient(
        target, ca=pki.ca, cert=cert, key=key, server_name="localhost", timeout_s=5
    )


def _outcome(fn: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    try:
        fn()
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return OK, ""


def _calls(c: SliceaiClient, policy_text: str) -> dict[str, Callable[[], object]]:
    """One harmless call per RPC, keyed like METHOD_ROLES."""

    def connect() -> object:
        stream = c.connect("tls-ctl")
        msg = next(iter(stream))
        stream.cancel()
        return msg

    def watch() -> object:
        call = c.watch()
        plan = next(iter(call))
        call.cancel()
        return plan

    return {
        "ControllerService.Connect": connect,
        "MecService.PushTelemetry": lambda: c.push_kpm("e2", [("DRB.UEThpDl", "consults", 1.0)]),
        "MecService.GetForecast": lambda: c.forecast(["consults"]),
        "MecService.RequestBandwidth": lambda: c.mec.RequestBandwidth(
            bw_info("app-1", "consults", 1e6), timeout=5
        ),
        "MecService.ModifyBandwidth": lambda: c.mec.ModifyBandwidth(
            mec_pb2.ModifyBandwidthRequest(allocation_id="none"), timeout=5
        ),
        "MecService.ReleaseBandwidth": lambda: c.release_bandwidth("none"),
        "MecService.ListBandwidth": lambda: c.list_bandwidth(),
        "MecService.WatchAllocations": watch,
        "AdminService.GetPolicy": lambda: c.get_policy(),
        "AdminService.ApplyPolicy": lambda: c.apply_policy(policy_text, dry_run=True),
        "AdminService.ListPolicyVersions": lambda: c.list_policies(),
    }


def _violations(c: SliceaiClient, policy_text: str, who: str, role: str) -> list[str]:
    """Every RPC called as ``who`` (role ``role``); the cells that break the matrix."""
    calls = _calls(c, policy_text)
    assert calls.keys() == METHOD_ROLES.keys()
    out = []
    for method, call in calls.items():
        code, details = _outcome(call)
        expected = ALLOWED_RESULT.get(method, OK) if role in METHOD_ROLES[method] else DENIED
        if code != expected:
            out.append(
                f"{who} ({role}) {method}: {code.name} {details!r}, expected {expected.name}"
            )
    return out


def test_the_matrix_names_every_rpc_and_only_known_roles() -> None:
    from sliceai.api.server import SERVICE_NAMES
    from sliceai.v1 import admin_pb2 as a
    from sliceai.v1 import controller_pb2 as c
    from sliceai.v1 import mec_pb2 as m

    rpcs = {
        f"{service.name}.{method.name}"
        for module in (c, m, a)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert len(SERVICE_NAMES) == 3
    assert set(METHOD_ROLES) == rpcs
    for method, roles in METHOD_ROLES.items():
        assert roles <= {*ROLES, "anonymous"}, method
        assert "admin" in roles, method  # the administrator may do anything
        if "anonymous" in roles:
            assert method in READ_ONLY, method  # anonymous callers never change anything
    assert METHOD_ROLES["AdminService.ApplyPolicy"] == {"admin"}


@pytest.mark.parametrize("who", sorted(ROLE_CERTS))
def test_role_matrix_cell_by_cell(
    start_server: Callable[..., Any], pki: Any, policy_text: str, who: str
) -> None:
    running = start_server(tls=TlsFiles(pki.server_cert, pki.server_key, pki.ca))
    with _client(running.target, pki, who) as c:
        assert _violations(c, policy_text, who, ROLE_CERTS[who]) == []


def test_certificates_without_identity_are_refused_on_every_rpc(
    start_server: Callable[..., Any], pki: Any, policy_text: str, no_identity: NoIdentity
) -> None:
    running = start_server(tls=TlsFiles(pki.server_cert, pki.server_key, pki.ca))
    violations, cells = [], 0
    for who, (_, reason) in no_identity.items():
        with _client(running.target, pki, who) as c:
            for method, call in _calls(c, policy_text).items():
                cells += 1
                code, details = _outcome(call)
                if code != UNAUTHENTICATED or reason not in details:
                    violations.append(f"{who} {method}: {code.name} {details!r}")
    assert cells == len(no_identity) * len(METHOD_ROLES)
    assert violations == []
    assert running.engine.grants(Caller("admin", "t")) == []  # nothing reached the engine


def test_allow_anonymous_gives_identityless_certificates_read_only_access(
    start_server: Callable[..., Any], pki: Any, policy_text: str
) -> None:
    running = start_server(
        tls=TlsFiles(pki.server_cert, pki.server_key, pki.ca), allow_anonymous=True
    )
    violations = []
    for who in ("norole", "dns-spoof", "cn-spoof", "unknown-role", "two-identities"):
        with _client(running.target, pki, who) as c:
            violations += _violations(c, policy_text, who, "anonymous")
    assert violations == []
    with _client(running.target, pki, "admin") as admin:  # valid identities keep their role
        assert _violations(admin, policy_text, "admin", "admin") == []


def test_undecodable_request_is_refused_before_parsing_for_strangers(
    start_server: Callable[..., Any], pki: Any
) -> None:
    running = start_server(tls=TlsFiles(pki.server_cert, pki.server_key, pki.ca))
    garbage = b"\xff\xff\xff"
    for who, expected in (
        ("dns-spoof", UNAUTHENTICATED),
        ("admin", grpc.StatusCode.INVALID_ARGUMENT),
    ):
        with _client(running.target, pki, who) as c:
            raw = c.channel.unary_unary("/sliceai.v1.AdminService/GetPolicy")
            assert _outcome(lambda raw=raw: raw(garbage, timeout=5))[0] == expected, who


# -- the certificate parser alone ---------------------------------------------


def test_identity_comes_from_the_single_uri_san_only(pki: Any, no_identity: NoIdentity) -> None:
    def load(name: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate(pki.client(name)[0].read_bytes())

    assert identity_of_certificate(load("app1-dns-admin")) == Caller("mec-app", "app-1")
    assert identity_of_certificate(load("controller")) == Caller("controller", "osken-1")
    for name, (_, reason) in no_identity.items():
        with pytest.raises(IdentityError) as info:
            identity_of_certificate(load(name))
        assert reason in str(info.value), name


class _Context:
    def __init__(self, auth: dict[str, list[bytes]]) -> None:
        self._auth = auth

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth

    def peer(self) -> str:
        return "ipv4:192.0.2.1:1"


def test_server_only_tls_off_loopback_needs_allow_anonymous(
    tmp_path: Any, policy_text: str, pki: Any
) -> None:
    engine = Engine(StateStore(tmp_path / "s.db"), policy_text)
    try:
        with pytest.raises(ServerConfigError, match="allow-anonymous"):
            SliceaiServer(
                engine,
                ServerSettings(listen="0.0.0.0:0", tls=TlsFiles(pki.server_cert, pki.server_key)),
            )
    finally:
        engine.store.close()
    limiter = RateLimiter(1.0, 1.0)
    with pytest.raises(IdentityError, match="server-only TLS"):
        Authorizer(False, False, limiter).caller(_Context({}))  # type: ignore[arg-type]
    anonymous = Authorizer(False, False, limiter, allow_anonymous=True)
    assert anonymous.caller(_Context({})) == Caller("anonymous", "")  # type: ignore[arg-type]
    assert Authorizer(False, True, limiter).caller(_Context({})).role == "admin"  # type: ignore[arg-type]


def test_mutual_tls_peer_without_certificate_bytes_is_refused() -> None:
    authorizer = Authorizer(True, True, RateLimiter(1.0, 1.0))
    with pytest.raises(IdentityError, match="no client certificate"):
        authorizer.caller(
            _Context({"x509_subject_alternative_name": [b"spiffe://sliceai/admin/x"]})
        )  # type: ignore[arg-type]


def test_connect_is_refused_before_hello_for_strangers(
    start_server: Callable[..., Any], pki: Any
) -> None:
    running = start_server(tls=TlsFiles(pki.server_cert, pki.server_key, pki.ca))
    with _client(running.target, pki, "dns-spoof") as c:
        call = c.controller.Connect(iter([controller_pb2.ControllerMessage()]), timeout=5)
        code, details = _outcome(lambda: list(call))
    assert code == UNAUTHENTICATED
    assert "no URI subject alternative name" in details
