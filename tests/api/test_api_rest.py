"""MEC 015 BWM over REST: a real uvicorn server on loopback, driven with httpx.

The resource shapes (BwInfo / BwInfoDeltas / ProblemDetails with the spec's field
names), the spec's rules for accepting or refusing a BwInfo, the slice mapping,
ETag / If-Match (412), 404 / 405, and the OpenAPI document.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from sliceai.api.rest.serve import RestServer
from sliceai.engine import LOCAL_ADMIN, Engine

COLLECTION = "/bwm/v1/bw_allocations"
PROBLEM_FIELDS = {"type", "title", "status", "detail", "instance"}
BWINFO_FIELDS = {
    "timeStamp",
    "appInsId",
    "appName",
    "allocationId",
    "requestType",
    "sessionFilter",
    "fixedBWPriority",
    "fixedAllocation",
    "allocationDirection",
}


@pytest.fixture
def rest(start_server: Callable[..., Any]) -> Iterator[tuple[httpx.Client, Engine]]:
    """Plaintext on loopback: every caller is the local administrator."""
    running = start_server()
    server = RestServer(running.engine, "127.0.0.1:0")
    server.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as client:
            yield client, running.engine
    finally:
        server.stop(0.5)


def bw(**fields: Any) -> dict[str, Any]:
    """A minimal APPLICATION_SPECIFIC BwInfo with ``fields`` replaced (None: left out)."""
    body: dict[str, Any] = {
        "appInsId": "app-1",
        "requestType": 0,
        "fixedAllocation": "1000000",
        "allocationDirection": "00",
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


def assert_problem(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert set(body) == PROBLEM_FIELDS
    assert body["status"] == status
    assert body["detail"]
    return dict(body)


def test_post_creates_a_bwinfo_with_location_and_etag(rest: Any) -> None:
    client, engine = rest
    resp = client.post(COLLECTION, json=bw(appName="consults", allocationDirection="10"))
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert set(body) <= BWINFO_FIELDS
    assert body["appInsId"] == "app-1"
    assert body["requestType"] == 0
    assert body["fixedAllocation"] == "1000000"  # a string in bit/s, as the spec has it
    assert body["allocationDirection"] == "10"
    assert set(body["timeStamp"]) == {"seconds", "nanoSeconds"}
    assert resp.headers["location"] == f"{COLLECTION}/{body['allocationId']}"
    assert resp.headers["etag"].startswith('"')
    (grant,) = engine.grants(LOCAL_ADMIN)
    assert grant.request.slice == "consults"
    assert grant.request.rates_bps() == (1e6, 1e6)
    got = client.get(resp.headers["location"])
    assert got.status_code == 200
    assert got.json() == body
    assert got.headers["etag"] == resp.headers["etag"]


# (BwInfo, status, slice it lands in) per the spec's rules: the four required fields,
# requestType 0/1, allocationDirection 00/01/10, fixedAllocation a string of bit/s,
# sessionFilter only for SESSION_SPECIFIC and for a single session.
SPEC_CASES: list[tuple[str, dict[str, Any], int, str | None]] = [
    ("minimal application request: the policy's default slice", bw(), 201, "staff-embb"),
    ("uplink", bw(allocationDirection="01"), 201, "staff-embb"),
    (
        "every optional field",
        bw(
            timeStamp={"seconds": 1700000000, "nanoSeconds": 5},
            fixedBWPriority="SEE_DESCRIPTION",
            appName="surgery-video",
        ),
        201,
        "surgery-video",
    ),
    ("appName as an S-NSSAI", bw(appName="1-000001"), 201, None),
    (
        "session request classified by the match rules",
        bw(
            requestType=1,
            sessionFilter=[{"protocol": "6", "dstPort": ["8443"], "dstAddress": "10.1.2.3"}],
        ),
        201,
        "consults",
    ),
    (
        "session request by protocol name, port as a range member",
        bw(requestType=1, sessionFilter=[{"protocol": "UDP", "sourcePort": ["6050"]}]),
        201,
        "vitals",
    ),
    (
        "requestType given as the string '0' (BwInfoDeltas' schema type)",
        bw(requestType="0"),
        201,
        "staff-embb",
    ),
    ("no appInsId", bw(appInsId=None), 400, None),
    ("no requestType", bw(requestType=None), 400, None),
    ("no fixedAllocation", bw(fixedAllocation=None), 400, None),
    ("no allocationDirection", bw(allocationDirection=None), 400, None),
    ("requestType 2", bw(requestType=2), 400, None),
    ("requestType true", bw(requestType=True), 400, None),
    ("allocationDirection 11", bw(allocationDirection="11"), 400, None),
    ("allocationDirection as a number", bw(allocationDirection=0), 400, None),
    ("fixedAllocation as a JSON number", bw(fixedAllocation=1000000), 400, None),
    ("fixedAllocation with units", bw(fixedAllocation="1 Mbps"), 400, None),
    ("fixedAllocation zero", bw(fixedAllocation="0"), 400, None),
    ("fixedBWPriority not a number", bw(fixedBWPriority="high"), 400, None),
    ("timeStamp without nanoSeconds", bw(timeStamp={"seconds": 1}), 400, None),
    ("an unknown field", bw(fixedAllocaton="5"), 400, None),
    ("SESSION_SPECIFIC without sessionFilter", bw(requestType=1), 400, None),
    (
        "sessionFilter on an APPLICATION_SPECIFIC request",
        bw(sessionFilter=[{"protocol": "6", "dstPort": ["8443"]}]),
        400,
        None,
    ),
    (
        "sessionFilter that is several sessions in several slices",
        bw(requestType=1, sessionFilter=[{"protocol": "17", "dstPort": ["5000", "6000"]}]),
        400,
        None,
    ),
    (
        "sessionFilter with an address range",
        bw(
            requestType=1,
            sessionFilter=[{"protocol": "6", "dstPort": ["8443"], "dstAddress": "10.0.0.0/8"}],
        ),
        400,
        None,
    ),
    (
        "sessionFilter with a port that is no number",
        bw(requestType=1, sessionFilter=[{"protocol": "6", "dstPort": ["https"]}]),
        400,
        None,
    ),
    (
        "sessionFilter with an unknown protocol number",
        bw(requestType=1, sessionFilter=[{"protocol": "47", "dstPort": ["8443"]}]),
        400,
        None,
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "slice_name"),
    [pytest.param(b, s, n, id=i) for i, b, s, n in SPEC_CASES],
)
def test_bwinfo_accepted_or_refused_as_the_spec_says(
    rest: Any, body: dict[str, Any], status: int, slice_name: str | None
) -> None:
    client, engine = rest
    resp = client.post(COLLECTION, json=body)
    if status != 201:
        assert_problem(resp, status)
        assert engine.grants(LOCAL_ADMIN) == []  # a refusal changes nothing
        return
    assert resp.status_code == 201, resp.text
    (grant,) = engine.grants(LOCAL_ADMIN)
    if slice_name is not None:
        assert grant.request.slice == slice_name
    echoed = resp.json()
    for key in ("appInsId", "fixedAllocation", "allocationDirection"):
        assert echoed[key] == body[key]
    assert echoed["requestType"] == int(body["requestType"])


def test_malformed_json_is_a_problem(rest: Any) -> None:
    client, _ = rest
    resp = client.post(
        COLLECTION, content=b'{"appInsId": ', headers={"content-type": "application/json"}
    )
    assert_problem(resp, 400)


def test_refused_admission_is_403_and_leaves_the_grants(rest: Any) -> None:
    client, engine = rest
    # consults: 20 Mbit/s guaranteed, 100 Mbit/s maximum: 20 + 90 does not fit
    resp = client.post(COLLECTION, json=bw(appName="consults", fixedAllocation="90000000"))
    body = assert_problem(resp, 403)
    assert body["title"] == "Bandwidth not admitted"
    assert engine.grants(LOCAL_ADMIN) == []
    assert (
        client.post(COLLECTION, json=bw(appName="consults", fixedAllocation="70000000")).status_code
        == 201
    )


def test_duplicate_is_409(rest: Any) -> None:
    client, _ = rest
    assert client.post(COLLECTION, json=bw()).status_code == 201
    assert_problem(client.post(COLLECTION, json=bw(fixedAllocation="5")), 409)


def test_list_filters(rest: Any) -> None:
    client, _ = rest
    a = client.post(COLLECTION, json=bw(appName="consults")).json()
    b = client.post(COLLECTION, json=bw(appInsId="app-2", appName="vitals")).json()
    c = client.post(
        COLLECTION,
        json=bw(
            appInsId="app-3", requestType=1, sessionFilter=[{"protocol": "6", "dstPort": ["8443"]}]
        ),
    ).json()

    def ids(**params: Any) -> set[str]:
        resp = client.get(COLLECTION, params=params)
        assert resp.status_code == 200
        return {x["allocationId"] for x in resp.json()}

    assert ids() == {a["allocationId"], b["allocationId"], c["allocationId"]}
    assert ids(app_instance_id="app-1") == {a["allocationId"]}
    assert ids(app_instance_id=["app-1", "app-2"]) == {a["allocationId"], b["allocationId"]}
    assert ids(app_name="vitals") == {b["allocationId"]}
    assert ids(app_name="nothing") == set()
    assert ids(session_id=c["allocationId"]) == {c["allocationId"]}
    assert ids(session_id=a["allocationId"]) == set()  # an application allocation is no session
    assert ids(app_instance_id="app-1", app_name="vitals") == set()


def test_patch_merges_deltas(rest: Any) -> None:
    client, engine = rest
    created = client.post(COLLECTION, json=bw(appName="consults", fixedBWPriority="3"))
    url = created.headers["location"]
    resp = client.patch(
        url, json={"appInsId": "app-1", "requestType": "0", "fixedAllocation": "2000000"}
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["fixedAllocation"] == "2000000"
    assert body["allocationDirection"] == "00"  # kept
    assert body["fixedBWPriority"] == "3"  # kept
    assert body["appName"] == "consults"
    assert resp.headers["etag"] != created.headers["etag"]
    (grant,) = engine.grants(LOCAL_ADMIN)
    assert grant.request.fixed_allocation_bps == 2_000_000
    assert grant.request.slice == "consults"
    # BwInfoDeltas requires appInsId and requestType; appInsId cannot change
    assert_problem(client.patch(url, json={"fixedAllocation": "5"}), 400)
    assert_problem(client.patch(url, json={"appInsId": "app-9", "requestType": 0}), 400)
    assert_problem(
        client.patch(url, json={"appInsId": "app-1", "requestType": 0, "allocationId": "other"}),
        400,
    )


def test_put_replaces_and_may_move_the_slice(rest: Any) -> None:
    client, engine = rest
    url = client.post(COLLECTION, json=bw(appName="consults")).headers["location"]
    resp = client.put(
        url, json=bw(appName="vitals", allocationDirection="01", fixedAllocation="3000")
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["allocationDirection"] == "01"
    (grant,) = engine.grants(LOCAL_ADMIN)
    assert (grant.request.slice, grant.request.rates_bps()) == ("vitals", (0.0, 3000.0))


def test_conflicting_update_is_412_and_changes_nothing(rest: Any) -> None:
    client, engine = rest
    created = client.post(COLLECTION, json=bw(appName="consults"))
    url, first = created.headers["location"], created.headers["etag"]
    # writer A updates with the tag it read
    a = client.patch(
        url,
        json={"appInsId": "app-1", "requestType": 0, "fixedAllocation": "2000000"},
        headers={"If-Match": first},
    )
    assert a.status_code == 200
    # writer B read the same first version: its update conflicts
    b = client.put(
        url, json=bw(appName="consults", fixedAllocation="9000000"), headers={"If-Match": first}
    )
    assert_problem(b, 412)
    b2 = client.patch(
        url,
        json={"appInsId": "app-1", "requestType": 0, "fixedAllocation": "7"},
        headers={"If-Match": first},
    )
    assert_problem(b2, 412)
    (grant,) = engine.grants(LOCAL_ADMIN)
    assert grant.request.fixed_allocation_bps == 2_000_000
    # with the current tag, or "*", it goes through
    ok = client.put(
        url,
        json=bw(appName="consults", fixedAllocation="9000000"),
        headers={"If-Match": a.headers["etag"]},
    )
    assert ok.status_code == 200
    assert (
        client.put(
            url, json=bw(appName="consults", fixedAllocation="8"), headers={"If-Match": "*"}
        ).status_code
        == 200
    )


def test_delete_then_404_everywhere(rest: Any) -> None:
    client, engine = rest
    url = client.post(COLLECTION, json=bw()).headers["location"]
    resp = client.delete(url)
    assert resp.status_code == 204
    assert resp.content == b""
    assert engine.grants(LOCAL_ADMIN) == []
    assert_problem(client.get(url), 404)
    assert_problem(client.delete(url), 404)
    assert_problem(client.put(url, json=bw()), 404)
    assert_problem(client.patch(url, json={"appInsId": "app-1", "requestType": 0}), 404)


def test_unknown_path_404_and_method_405(rest: Any) -> None:
    client, _ = rest
    assert_problem(client.get("/bwm/v1/nothing"), 404)
    assert_problem(client.get("/bwm/v2/bw_allocations"), 404)
    resp = client.delete(COLLECTION)
    assert_problem(resp, 405)
    assert set(resp.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST"}
    assert_problem(client.post(f"{COLLECTION}/some-id", json=bw()), 405)


def test_openapi_document_has_the_spec_shapes(rest: Any) -> None:
    client, _ = rest
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    assert set(paths[COLLECTION]) == {"get", "post"}
    assert set(paths[f"{COLLECTION}/{{allocationId}}"]) == {"get", "put", "patch", "delete"}
    schemas = doc["components"]["schemas"]
    assert set(schemas["BwInfo"]["properties"]) == BWINFO_FIELDS
    assert set(schemas["BwInfo"]["required"]) == {
        "appInsId",
        "requestType",
        "fixedAllocation",
        "allocationDirection",
    }
    assert set(schemas["BwInfoDeltas"]["required"]) == {"appInsId", "requestType"}
    assert set(schemas["ProblemDetails"]["properties"]) == PROBLEM_FIELDS
    params = {p["name"] for p in paths[COLLECTION]["get"]["parameters"]}
    assert params == {"app_instance_id", "app_name", "session_id"}


def test_the_listening_socket_is_tcp_so_asyncio_turns_nagle_off(
    start_server: Callable[..., Any],
) -> None:
    # asyncio sets TCP_NODELAY on accepted sockets only when the listener's proto is TCP;
    # without it every response waited for the client's delayed ACK (about 40 ms)
    server = RestServer(start_server().engine, "127.0.0.1:0")
    try:
        assert server.sock.proto == socket.IPPROTO_TCP
    finally:
        server.sock.close()


def test_a_body_over_the_limit_is_refused_before_it_is_read(rest: Any) -> None:
    client, _ = rest
    big = bw(appName="consults", sessionFilter=[{"sourceIp": ["10.0.0.1"]}] * 4000)
    declared = client.post(COLLECTION, json=big)  # httpx declares its Content-Length
    assert_problem(declared, 413)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts as it streams
        yield b'{"appInsId": "app-1", "requestType": 0, "sessionFilter": ['
        for _ in range(2000):
            yield b'{"sourceIp": ["10.0.0.1", "10.0.0.2"]},' * 4
        yield b"{}]}"

    streamed = client.post(
        COLLECTION, content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in streamed.request.headers
    assert_problem(streamed, 413)
    assert not client.get(COLLECTION).json()  # nothing admitted
    assert client.post(COLLECTION, json=bw(appName="consults")).status_code == 201
