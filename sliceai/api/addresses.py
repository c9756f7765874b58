"""Listen addresses: the host of ``HOST:PORT`` and whether it is loopback (plaintext is
allowed only there, for gRPC, REST and the metrics endpoint alike)."""

from __future__ import annotations

import ipaddress


def host_of(listen: str) -> str:
    """``HOST`` of ``HOST:PORT`` (``[::1]:50051`` -> ``::1``)."""
    host = listen.rsplit(":", 1)[0] if ":" in listen else listen
    return host.strip("[]")


def is_loopback_host(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback(listen: str) -> bool:
    """Whether ``HOST:PORT`` listens on loopback only."""
    return is_loopback_host(host_of(listen))
