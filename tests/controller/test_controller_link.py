"""The service link against a real gRPC server on a port the OS picks, and its message mapping."""

from __future__ import annotations

import queue
import time

import pytest

from sliceai.controller.counters import SliceRate
from sliceai.controller.scripted_service import ScriptedControllerService, plan_message
from sliceai.controller.service_link import (
    LinkEvent,
    LinkSettings,
    ServiceLink,
    plan_rates,
    telemetry_batch,
)
from sliceai.controller.testbed import free_tcp_port
from sliceai.policy import Direction

DL, UL = Direction.DL, Direction.UL


def _next(link: ServiceLink, kind: str, timeout_s: float = 10.0) -> LinkEvent:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ev = link.inbox.get(timeout=0.1)
        except queue.Empty:
            continue
        if ev.kind == kind:
            return ev
    raise AssertionError(f"no {kind!r} event within {timeout_s} s")


def test_plan_message_round_trip() -> None:
    rates = {("a", DL): 1e6, ("a", UL): 2e6, ("b", DL): 3e6, ("b", UL): 0.0}
    assert plan_rates(plan_message(rates, 7).plan) == rates


def test_telemetry_batch_columns() -> None:
    msg = telemetry_batch(
        5, {("b", UL): SliceRate(2e6, 3e6, 10), ("a", DL): SliceRate(1e6, 1e6, 0)}, 0.5, 1e9
    )
    t = msg.telemetry
    assert list(t.slices) == ["a", "b"]
    assert list(t.dl_bps) == [1e6, 0.0]
    assert list(t.ul_bps) == [0.0, 2e6]
    assert list(t.ul_dropped_bytes) == [0, 10]
    assert t.period_s == 0.5
    assert t.end_of_period


def test_link_receives_plans_sends_telemetry_and_reconnects() -> None:
    service = ScriptedControllerService(policy_yaml="name: x\n")
    port = service.start()
    link = ServiceLink(
        LinkSettings(
            target=f"127.0.0.1:{port}", source_id="t-1", backoff_min_s=0.1, backoff_max_s=0.2
        ),
        datapath_ids=lambda: [42],
    )
    link.start()
    try:
        _next(link, "connected")
        assert _next(link, "policy").policy_yaml == "name: x\n"
        service.send_plan({("a", DL): 5e6, ("a", UL): 1e6}, version=3)
        plan = _next(link, "plan")
        assert plan.version == 3
        assert plan.rates[("a", DL)] == 5e6
        link.send_telemetry(
            telemetry_batch(42, {("a", DL): SliceRate(1e6, 1e6, 0)}, 1.0, time.time())
        )
        deadline = time.monotonic() + 10
        while not service.telemetry and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.hellos[0].source_id == "t-1"
        assert list(service.hellos[0].datapath_ids) == [42]
        assert list(service.telemetry[0].slices) == ["a"]
        service.stop()
        lost = _next(link, "lost")
        assert lost.detail
        service.start()  # the same port again
        _next(link, "connected")
        assert _next(link, "plan").version == 3  # the service resends its latest plan
    finally:
        link.stop()
        service.stop()


def test_link_keeps_retrying_an_absent_service() -> None:
    link = ServiceLink(
        LinkSettings(target=f"127.0.0.1:{free_tcp_port()}", backoff_min_s=0.05, backoff_max_s=0.1),
        datapath_ids=lambda: [],
    )
    link.start()
    try:
        _next(link, "lost")
        _next(link, "lost")
    finally:
        link.stop()


@pytest.mark.parametrize("n", [70])
def test_telemetry_queue_drops_oldest_when_full(n: int) -> None:
    link = ServiceLink(LinkSettings(target="127.0.0.1:1"), datapath_ids=lambda: [])
    for i in range(n):
        link.send_telemetry(i)
    drained = []
    while True:
        try:
            drained.append(link._outbox.get_nowait())
        except queue.Empty:
            break
    assert drained[-1] == n - 1
    assert len(drained) == 64
