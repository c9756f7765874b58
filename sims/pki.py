"""A throw-away PKI for tests and the soak: a CA, a server certificate for localhost /
127.0.0.1, and client certificates with the subject alternative names asked for (the
service reads a caller's identity from its URI SAN, ``spiffe://sliceai/<role>/<id>``)."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


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


def make_pki(directory: Path, clients: Mapping[str, str | CertSpec | None]) -> Pki:
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
