"""TLS, mutual TLS, grant ownership and rate limits, with certificates the test generates.

The role matrix itself, cell by cell: ``test_api_roles.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest

from sliceai.api.auth import RateLimiter
from sliceai.api.client import SliceaiClient, bw_info
from sliceai.api.server import ServerConfigError, ServerSettings, SliceaiServer, TlsFiles
from sliceai.engine import LOCAL_ADMIN
from sliceai.v1 import admin_pb2, controller_pb2

OK = grpc.StatusCode.OK
DENIED = grpc.StatusCode.PERMISSION_DENIED


def _client(target: str, pki: Any, name: str | None) -> SliceaiClient:
    if name is None:
        return SliceaiClient(target, ca=pki.ca, server_name="localhost", timeout_s=5)
    cert, key = pki.client(name)
    return SliceaiClient(
        target, ca=pki.ca, cert=cert, key=key, server_name="localhost", timeout_s=5
    )


def _code(fn: Callable[[], object]) -> grpc.StatusCode:
    try:
        fn()
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return OK


def test_mec_app_sees_and_changes_only_its_own_grants(
    start_server: Callable[..., Any], pki: Any
) -> None:
    running = start_server(tls=TlsFiles(pki.server_cert, pki.server_key, pki.ca))
    with _client(running.target, pki, "app1") as app1, _client(running.target, pki, "app2") as app2:
        g1 = app1.request_bandwidth("app-1", "consults", 2e6)
        assert _code(lambda: app1.request_bandwidth("app-2", "consults", 2e6)) == DENIED
        g2 = app2.request_bandwidth("app-2", "consults", 3e6)
        assert [g.allocation_id for g in app1.list_bandwidth()] == [g1.allocation_id]
        assert [g.allocation_id for g in app2.list_bandwidth(app_ins_id="app-1")] == []
        assert _code(lambda: app1.release_bandwidth(g2.allocation_id)) == grpc.StatusCode.NOT_FOUND
        info = bw_info("app-2", "consults", 9e6)
        assert (
            _code(lambda: app1.modify_bandwidth(g2.allocation_id, info))
            == grpc.StatusCode.NOT_FOUND
        )
        call = app1.watch(["consults"])
        plan = next(iter(call))
        call.cancel()
        assert plan.slices[0].granted_dl_bps in (0.0, 2e6)  # own grant only, never app-2's
        assert len(running.engine.grants(LOCAL_ADMIN)) == 2


def test_untrusted_or_missing_client_certificates_cannot_connect(
    start_server: Callable[..., Any], pki: Any
) -> None:
    running = start_server(tls=TlsFiles(pki.server_cert, pki.server_key, pki.ca))
    with _client(running.target, pki, "rogue") as rogue:
        assert _code(rogue.get_policy) == grpc.StatusCode.UNAVAILABLE
    with _client(running.target, pki, None) as anonymous:
        assert _code(anonymous.get_policy) == grpc.StatusCode.UNAVAILABLE
    with SliceaiClient(running.target, timeout_s=5) as plaintext:
        assert _code(plaintext.get_policy) == grpc.StatusCode.UNAVAILABLE


def test_server_only_tls_gives_loopback_callers_admin(
    start_server: Callable[..., Any], pki: Any
) -> None:
    running = start_server(tls=TlsFiles(pki.server_cert, pki.server_key))
    with _client(running.target, pki, None) as c:
        assert c.get_policy().version == 1


def test_plaintext_is_refused_off_loopback(tmp_path: Any, policy_text: str) -> None:
    from sliceai.engine import Engine, StateStore

    engine = Engine(StateStore(tmp_path / "s.db"), policy_text)
    with pytest.raises(ServerConfigError, match="plaintext"):
        SliceaiServer(engine, ServerSettings(listen="0.0.0.0:0"))
    engine.store.close()


def test_rate_limit_answers_resource_exhausted(start_server: Callable[..., Any]) -> None:
    running = start_server(rate_per_s=0.001, burst=3.0)  # no refill during the test
    with SliceaiClient(running.target, timeout_s=5) as c:
        codes = [_code(c.get_policy) for _ in range(6)]
    assert codes[:3] == [OK] * 3
    assert codes[3:] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 3


def test_token_bucket_refills() -> None:
    now = [0.0]
    bucket = RateLimiter(rate=100.0, burst=2.0, clock=lambda: now[0])
    assert bucket.allow("k")
    assert bucket.allow("k")
    now[0] = 0.009
    assert not bucket.allow("k")
    now[0] = 0.011
    assert bucket.allow("k")
    assert not bucket.allow("k")
    now[0] = 1.0
    assert bucket.allow("k")
    assert bucket.allow("k")
    assert not bucket.allow("k")  # a long wait refills up to the burst, no more
    assert bucket.allow("other")


def test_oversized_message_is_resource_exhausted(client: SliceaiClient) -> None:
    huge = "x" * (3 << 20)
    code = _code(
        lambda: client.admin.ApplyPolicy(admin_pb2.ApplyPolicyRequest(yaml=huge), timeout=5)
    )
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    big = controller_pb2.TelemetryBatch(
        slices=["consults"] * 5000, dl_bps=[1.0] * 5000, ul_bps=[1.0] * 5000
    )
    stream = client.connect("big")
    it = iter(stream)
    next(it)
    stream.send(big)
    with pytest.raises(grpc.RpcError) as info:
        for _ in it:
            pass
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
