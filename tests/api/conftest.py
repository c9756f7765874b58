"""Fixtures of the API tests: real servers on ephemeral loopback ports, generated certificates."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from sims.pki import CertSpec, Pki, make_pki
from sliceai.api.client import SliceaiClient
from sliceai.api.server import ServerSettings, SliceaiServer, TlsFiles
from sliceai.engine import Engine, EngineSettings, StateStore
from sliceai.planning import RollingQuantileForecaster

POLICY_PATH = Path(__file__).resolve().parents[2] / "policies" / "hospital.yaml"


@pytest.fixture
def policy_text() -> str:
    return POLICY_PATH.read_text(encoding="utf-8")


@dataclass
class Running:
    server: SliceaiServer
    engine: Engine
    target: str


@pytest.fixture
def start_server(tmp_path: Path, policy_text: str) -> Iterator[Callable[..., Running]]:
    """Factory: start a server on 127.0.0.1:0 with an engine on fakes; stopped at teardown."""
    started: list[Running] = []

    def start(
        tls: TlsFiles | None = None,
        interval_s: float = 0.1,
        forecaster: Any = None,
        db: Path | None = None,
        **settings: Any,
    ) -> Running:
        store = StateStore(db or tmp_path / f"state{len(started)}.db")
        engine = Engine(
            store,
            policy_text,
            forecaster or RollingQuantileForecaster(),
            settings=EngineSettings(interval_s=interval_s),
        )
        server = SliceaiServer(engine, ServerSettings(listen="127.0.0.1:0", tls=tls, **settings))
        server.start()
        running = Running(server, engine, f"127.0.0.1:{server.port}")
        started.append(running)
        return running

    yield start
    for r in started:
        r.server.stop(grace_s=0.5)
        r.engine.store.close()


@pytest.fixture
def client(start_server: Callable[..., Running]) -> Iterator[SliceaiClient]:
    running = start_server()
    with SliceaiClient(running.target) as c:
        c.engine = running.engine  # type: ignore[attr-defined]
        yield c


# -- certificates --------------------------------------------------------------


_URI, _DNS = x509.UniformResourceIdentifier, x509.DNSName
_ADMIN = "spiffe://sliceai/admin/x"

#: Certificates from the trusted CA that carry no valid identity, with (part of) the reason
#: the server gives: refused unless the server allows anonymous callers.
NO_IDENTITY: dict[str, tuple[CertSpec, str]] = {
    "norole": (CertSpec(), "no subject alternative name"),
    "dns-spoof": (CertSpec([_DNS(_ADMIN)]), "no URI subject alternative name"),
    "email-spoof": (CertSpec([x509.RFC822Name(_ADMIN)]), "no URI subject alternative name"),
    "cn-spoof": (CertSpec([_DNS("localhost")], common_name=_ADMIN), "no URI subject"),
    "unknown-role": (CertSpec([_URI("spiffe://sliceai/root/x")]), "unknown role 'root'"),
    "empty-id": (CertSpec([_URI("spiffe://sliceai/admin/")]), "is not spiffe://sliceai/"),
    "nested-id": (CertSpec([_URI("spiffe://sliceai/admin/a/b")]), "is not spiffe://sliceai/"),
    "query-id": (CertSpec([_URI("spiffe://sliceai/admin/x?role=admin")]), "is not spiffe"),
    "upper-scheme": (CertSpec([_URI("SPIFFE://sliceai/admin/x")]), "not in the trust domain"),
    "other-domain": (CertSpec([_URI("spiffe://evil/admin/x")]), "not in the trust domain"),
    "https-uri": (CertSpec([_URI("https://sliceai/admin/x")]), "not in the trust domain"),
    "two-identities": (
        CertSpec([_URI("spiffe://sliceai/mec-app/app-1"), _URI(_ADMIN)]),
        "2 URI subject alternative names",
    ),
    "same-id-twice": (CertSpec([_URI(_ADMIN), _URI(_ADMIN)]), "exactly one"),
}

CLIENTS: dict[str, str | CertSpec | None] = {
    "controller": "spiffe://sliceai/controller/osken-1",
    "app1": "spiffe://sliceai/mec-app/app-1",
    "app2": "spiffe://sliceai/mec-app/app-2",
    "admin": "spiffe://sliceai/admin/ops",
    # the URI SAN alone decides: an admin-looking DNS SAN beside it changes nothing
    "app1-dns-admin": CertSpec([_DNS(_ADMIN), _URI("spiffe://sliceai/mec-app/app-1")]),
    "rogue": "spiffe://sliceai/admin/intruder",
    **{name: spec for name, (spec, _) in NO_IDENTITY.items()},
}


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), CLIENTS)


@pytest.fixture(scope="session")
def no_identity() -> dict[str, tuple[CertSpec, str]]:
    """:data:`NO_IDENTITY`: the ``pki`` client certificates without a valid identity, and why."""
    return NO_IDENTITY
