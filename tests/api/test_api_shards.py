"""Shard per domain (docs/deployment.md): three `sliceai serve` instances on loopback, each
with its own policy and database, plan their own slices only, keep their grants apart,
refuse a controller sent to the wrong domain, and keep planning when a neighbour stops."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from sliceai.api.client import SliceaiClient
from sliceai.api.server import ServerSettings, SliceaiServer
from sliceai.engine import Engine, EngineSettings, StateStore
from sliceai.planning import RollingQuantileForecaster
from sliceai.policy import loads_policy
from sliceai.policy.bundled import bundled_policy_path

DOMAINS = ("hospital", "factory", "ran-3slice")


@pytest.fixture
def shards(tmp_path: Path) -> Iterator[dict[str, tuple[SliceaiServer, str]]]:
    running: dict[str, tuple[SliceaiServer, str]] = {}
    stores = []
    for name in DOMAINS:
        text = bundled_policy_path(f"{name}.yaml").read_text(encoding="utf-8")
        store = StateStore(tmp_path / f"{name}.db")
        stores.append(store)
        engine = Engine(
            store, text, RollingQuantileForecaster(), settings=EngineSettings(interval_s=0.1)
        )
        server = SliceaiServer(engine, ServerSettings(listen="127.0.0.1:0"))
        server.start()
        running[name] = (server, text)
    yield running
    for server, _ in running.values():
        server.stop(grace_s=0.5)
    for store in stores:
        store.close()


def _target(server: SliceaiServer) -> str:
    return f"127.0.0.1:{server.port}"


def _plans(messages: Iterator[Any], after: int = 0) -> Any:
    for msg in messages:
        if msg.WhichOneof("kind") == "plan" and msg.plan.version > after:
            return msg.plan
    raise AssertionError("stream ended without a plan")


def test_each_shard_plans_its_own_slices_and_keeps_its_grants(shards) -> None:
    clients = {name: SliceaiClient(_target(server)) for name, (server, _) in shards.items()}
    try:
        for name, (_, text) in shards.items():
            slices = list(loads_policy(text).slice_names)
            stream = clients[name].connect(f"osken-{name}")
            messages = iter(stream)
            assert next(messages).policy.yaml == text
            stream.send_rates(slices, [1e6] * len(slices), [1e5] * len(slices))
            plan = _plans(messages)
            assert [s.slice for s in plan.slices] == slices
            stream.cancel()
        granted = clients["hospital"].request_bandwidth("app-1", "consults", 2e6)
        assert [a.allocation_id for a in clients["hospital"].list_bandwidth()] == [
            granted.allocation_id
        ]
        assert not clients["factory"].list_bandwidth()
        assert not clients["ran-3slice"].list_bandwidth()
    finally:
        for client in clients.values():
            client.close()


def test_a_controller_sent_to_the_wrong_shard_is_refused(shards) -> None:
    server, _ = shards["factory"]
    with SliceaiClient(_target(server)) as client:
        stream = client.connect("osken-misrouted")
        messages = iter(stream)
        next(messages)
        stream.send_rates(["surgery-video"], [1e6], [1e6])  # a hospital slice
        with pytest.raises(grpc.RpcError) as info:
            for _ in messages:
                pass
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "surgery-video" in info.value.details()


def test_the_other_shards_keep_planning_when_one_stops(shards) -> None:
    shards["factory"][0].stop(grace_s=0.2)
    for name in ("hospital", "ran-3slice"):
        server, text = shards[name]
        slices = list(loads_policy(text).slice_names)
        with SliceaiClient(_target(server)) as client:
            assert client.health() == "SERVING"
            stream = client.connect(f"osken-{name}")
            messages = iter(stream)
            next(messages)
            first = _plans(messages)
            stream.send_rates(slices, [2e6] * len(slices), [1e5] * len(slices))
            assert _plans(messages, first.version).version > first.version
            stream.cancel()
    with (
        SliceaiClient(_target(shards["factory"][0]), timeout_s=2.0) as down,
        pytest.raises(grpc.RpcError),
    ):
        down.list_bandwidth()
