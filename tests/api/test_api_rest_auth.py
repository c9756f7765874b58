"""MEC 015 REST under mutual TLS with the gRPC roles, and the same admission as gRPC.

Real certificates (``make_pki``), a real uvicorn server on loopback, httpx clients.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import httpx
import pytest

from sliceai.api.client import SliceaiClient
from sliceai.api.rest.serve import RestServer
from sliceai.api.server import ServerConfigError, TlsFiles
from sliceai.engine import LOCAL_ADMIN

COLLECTION = "/bwm/v1/bw_allocations"


def body(
    app: str, slice_name: str = "consults", bps: int = 1_000_000, direction: str = "00"
) -> dict[str, Any]:
    return {
        "appInsId": app,
        "appName": slice_name,
        "requestType": 0,
        "fixedAllocation": str(bps),
        "allocationDirection": direction,
    }


@pytest.fixture
def mtls(
    start_server: Callable[..., Any], pki: Any
) -> Iterator[Callable[[str | None], httpx.Client]]:
    """Factory: an httpx client presenting the named client certificate (None: none)."""
    tls = TlsFiles(pki.server_cert, pki.server_key, pki.ca)
    running = start_server(tls=tls)
    server = RestServer(running.engine, "127.0.0.1:0", tls)
    server.start()
    clients: list[httpx.Client] = []

    def client(name: str | None) -> httpx.Client:
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        if name is not None:
            cert, key = pki.client(name)
            ctx.load_cert_chain(str(cert), str(key))
        c = httpx.Client(base_url=f"https://localhost:{server.port}", verify=ctx, timeout=10)
        clients.append(c)
        return c

    client.engine = running.engine  # type: ignore[attr-defined]
    yield client
    for c in clients:
        c.close()
    server.stop(0.5)


def test_a_mec_app_touches_only_its_own_allocations(mtls: Any) -> None:
    app1, app2, admin = mtls("app1"), mtls("app2"), mtls("admin")
    mine = app1.post(COLLECTION, json=body("app-1"))
    assert mine.status_code == 201, mine.text
    url = mine.headers["location"]
    # another app's appInsId: 403, nothing created
    resp = app1.post(COLLECTION, json=body("app-2"))
    assert resp.status_code == 403
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert len(mtls.engine.grants(LOCAL_ADMIN)) == 1
    # app-2 neither sees nor changes nor deletes app-1's allocation
    assert app2.get(url).status_code == 404
    assert app2.get(COLLECTION).json() == []
    assert app2.put(url, json=body("app-2")).status_code == 404
    assert app2.delete(url).status_code == 404
    theirs = app2.post(COLLECTION, json=body("app-2", "vitals"))
    assert theirs.status_code == 201
    assert {x["appInsId"] for x in app1.get(COLLECTION).json()} == {"app-1"}
    # the administrator sees both
    assert {x["appInsId"] for x in admin.get(COLLECTION).json()} == {"app-1", "app-2"}
    assert app1.delete(url).status_code == 204


@pytest.mark.parametrize(
    ("cert", "method", "status"),
    [
        ("controller", "POST", 403),  # METHOD_ROLES: RequestBandwidth is mec-app or admin
        ("controller", "GET", 403),
        ("app1-dns-admin", "GET", 200),  # the URI SAN decides: a mec-app, not an admin
        ("admin", "POST", 201),
        ("norole", "GET", 401),  # trusted CA, no identity
        ("two-identities", "POST", 401),
        ("other-domain", "GET", 401),
    ],
)
def test_roles_as_for_grpc(mtls: Any, cert: str, method: str, status: int) -> None:
    client = mtls(cert)
    resp = (
        client.get(COLLECTION) if method == "GET" else client.post(COLLECTION, json=body("app-1"))
    )
    assert resp.status_code == status, resp.text
    if status >= 400:
        assert resp.json()["status"] == status


@pytest.mark.parametrize("cert", [None, "rogue"])
def test_no_or_untrusted_certificate_fails_the_handshake(mtls: Any, cert: str | None) -> None:
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        mtls(cert).get(COLLECTION)


def test_plaintext_off_loopback_is_refused(start_server: Callable[..., Any]) -> None:
    running = start_server()
    with pytest.raises(ServerConfigError, match="plaintext"):
        RestServer(running.engine, "0.0.0.0:0")


def test_a_taken_port_is_a_configuration_error(start_server: Callable[..., Any]) -> None:
    running = start_server()
    first = RestServer(running.engine, "127.0.0.1:0")
    try:
        with pytest.raises(ServerConfigError, match="cannot listen"):
            RestServer(running.engine, f"127.0.0.1:{first.port}")
    finally:
        first.sock.close()


# -- the same admission decisions as gRPC ---------------------------------------------------

#: (app, slice, bit/s, direction): grants that fit, then ones that only fit while others
#: stand, duplicates, and grants over a slice's maximum. (A name that is no slice differs
#: by design: gRPC's slice field must name one; REST's appName may be the app's own name.)
REQUESTS = [
    ("app-1", "consults", 30_000_000, "both"),
    ("app-2", "consults", 30_000_000, "dl"),
    ("app-3", "consults", 30_000_000, "dl"),  # 20 + 90 over the 100 Mbit/s maximum
    ("app-3", "consults", 20_000_000, "ul"),
    ("app-1", "consults", 1_000, "both"),  # the same target as the first: a duplicate
    ("app-4", "surgery-video", 25_000_000, "both"),
    ("app-5", "surgery-video", 1_000_000, "ul"),
    ("app-6", "vitals", 4_000_000, "dl"),
    ("app-7", "vitals", 1, "dl"),
    ("app-8", "staff-embb", 450_000_000, "dl"),
    ("app-9", "staff-embb", 150_000_000, "ul"),
    ("app-10", "surgery-haptics", 2_000_000, "both"),
    ("app-11", "surgery-haptics", 1, "both"),
    ("app-12", "1-0000B1", 1_000, "dl"),  # consults, named by its S-NSSAI
    ("app-13", "consults", 0, "dl"),
]
MEC_DIRECTION = {"dl": "00", "ul": "01", "both": "10"}


def test_rest_and_grpc_admit_and_refuse_the_same_requests(
    start_server: Callable[..., Any],
) -> None:
    grpc_side, rest_side = start_server(), start_server()
    server = RestServer(rest_side.engine, "127.0.0.1:0")
    server.start()
    grpc_outcomes, rest_outcomes = [], []
    try:
        with (
            SliceaiClient(grpc_side.target) as g,
            httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as r,
        ):
            for app, slice_name, bps, direction in REQUESTS:
                try:
                    g.request_bandwidth(app, slice_name, bps, direction)
                    grpc_outcomes.append("granted")
                except grpc.RpcError as exc:
                    grpc_outcomes.append(exc.code().name)
                resp = r.post(COLLECTION, json=body(app, slice_name, bps, MEC_DIRECTION[direction]))
                rest_outcomes.append("granted" if resp.status_code == 201 else resp.status_code)
    finally:
        server.stop(0.5)
    granted = [o == "granted" for o in grpc_outcomes]
    assert [o == "granted" for o in rest_outcomes] == granted
    assert any(granted)  # the sequence exercises both answers
    assert not all(granted)
    # refusals keep their meaning: capacity -> 403, duplicate -> 409, bad value -> 400
    meaning = {"RESOURCE_EXHAUSTED": 403, "ALREADY_EXISTS": 409, "INVALID_ARGUMENT": 400}
    for g_out, r_out in zip(grpc_outcomes, rest_outcomes, strict=True):
        if g_out != "granted":
            assert meaning.get(g_out, r_out) == r_out, (g_out, r_out)

    def state(engine: Any) -> list[tuple[str, str, tuple[float, float]]]:
        return sorted(
            (x.app_ins_id, x.request.slice, x.request.rates_bps())
            for x in engine.grants(LOCAL_ADMIN)
        )

    assert state(grpc_side.engine) == state(rest_side.engine)
