"""Fixtures of the API tests: real servers on ephemeral loopback ports, generated certificates."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

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


@dataclass
class Pki:
    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path

    def client(self, name: str) -> tuple[Path, Path]:
        return self.dir / f"{name}.crt", self.dir / f"{name}.key"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    sans: list[x509.GeneralName],
    ca: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass(frozen=True)
class CertSpec:
    """A client certificate's subject alternative names and common name (default: its file name)."""

    sans: Sequence[x509.GeneralName] = field(default_factory=tuple)
    common_name: str | None = None


def make_pki(directory: Path, clients: dict[str, str | CertSpec | None]) -> Pki:
    """A CA, a server certificate for localhost / 127.0.0.1, and client certificates.

    ``clients``: file name -> SAN URI (None: a certificate without any SAN) or a
    :class:`CertSpec`. A client named ``rogue`` is signed by a different CA.
    """
    ca_key = _key()
    ca = _cert("sliceai test CA", ca_key, None, ca_key, [], ca=True)
    rogue_key = _key()
    rogue_ca = _cert("rogue CA", rogue_key, None, rogue_key, [], ca=True)
    pem = serialization.Encoding.PEM
    _write(directory / "ca.crt", ca.public_bytes(pem))
    skey = _key()
    server = _cert(
        "localhost",
        skey,
        ca,
        ca_key,
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    _write(directory / "server.crt", server.public_bytes(pem))
    _write(directory / "server.key", _pem_key(skey))
    for name, spec in clients.items():
        k = _key()
        if not isinstance(spec, CertSpec):
            spec = CertSpec([x509.UniformResourceIdentifier(spec)] if spec else [])
        issuer, issuer_key = (rogue_ca, rogue_key) if name == "rogue" else (ca, ca_key)
        c = _cert(spec.common_name or name, k, issuer, issuer_key, list(spec.sans))
        _write(directory / f"{name}.crt", c.public_bytes(pem))
        _write(directory / f"{name}.key", _pem_key(k))
    return Pki(directory, directory / "ca.crt", directory / "server.crt", directory / "server.key")


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
