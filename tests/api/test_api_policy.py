"""Policy apply over gRPC, and fail-safes as a client sees them."""

from __future__ import annotations

import resource
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import pytest

from sliceai.api.client import SliceaiClient
from sliceai.planning import Forecaster
from sliceai.v1 import common_pb2


def test_good_policy_is_applied_versioned_and_pushed_to_controllers(
    client: SliceaiClient, policy_text: str
) -> None:
    stream = client.connect("ctl-policy")
    messages = iter(stream)
    assert next(messages).policy.version == 1
    new_text = policy_text.replace("capacity: 500 Mbps", "capacity: 450 Mbps")
    applied = client.apply_policy(new_text, expected_version=1)
    assert applied.version == 2
    assert applied.applied_by == "local"
    assert client.get_policy().yaml == new_text
    for msg in messages:
        if msg.WhichOneof("kind") == "policy":
            assert msg.policy.version == 2
            assert "450 Mbps" in msg.policy.yaml
            break
    for msg in messages:
        if msg.WhichOneof("kind") == "plan":
            assert msg.plan.policy_version == 2
            break
    stream.cancel()
    assert [v.version for v in client.list_policies()] == [2, 1]


def test_bad_policy_lists_every_error_and_changes_nothing(
    client: SliceaiClient, policy_text: str
) -> None:
    bad = policy_text.replace("risk: 0.001", "risk: 2").replace("priority: 90", "priority: 0")
    with pytest.raises(grpc.RpcError) as info:
        client.apply_policy(bad)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = info.value.details()
    for field in ("slices[0].risk", "slices[1].risk", "slices[3].risk", "slices[4].priority"):
        assert field in details
    assert client.get_policy().version == 1
    with pytest.raises(grpc.RpcError) as info:
        client.apply_policy(policy_text, expected_version=7)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert client.apply_policy(policy_text, dry_run=True).version == 2
    assert client.get_policy().version == 1


class BrokenForecaster(Forecaster):
    name = "broken"

    def quantiles_at(self, *args: object, **kw: object) -> np.ndarray:
        raise RuntimeError("CUDA error: device-side assert")


def test_model_failure_is_flagged_in_the_plan(start_server: Callable[..., Any]) -> None:
    running = start_server(forecaster=BrokenForecaster())
    with SliceaiClient(running.target) as c:
        call = c.watch()
        plan = next(iter(call))
        call.cancel()
    assert plan.mode == common_pb2.PLAN_MODE_MODEL_FALLBACK
    assert "CUDA error" in plan.explanation
    assert plan.slices[1].dl_bps >= 35e6  # surgery-video floor still kept


def test_grant_shows_in_plans_and_release_removes_it(client: SliceaiClient) -> None:
    g = client.request_bandwidth("app-9", "staff-embb", 25e6, "ul")
    call = client.watch(["staff-embb"])
    for plan in call:
        if plan.slices[0].granted_ul_bps == 25e6:
            break
    call.cancel()
    assert plan.slices[0].ul_bps >= 25e6
    released = client.release_bandwidth(g.allocation_id)
    assert released.allocation_id == g.allocation_id
    assert client.list_bandwidth() == []
    with pytest.raises(grpc.RpcError) as info:
        client.release_bandwidth(g.allocation_id)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as info:
        client.request_bandwidth("app-9", "staff-embb", 450e6, "dl")
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "maximum" in info.value.details()


def test_an_alias_bomb_is_refused_without_expanding_it(
    client: SliceaiClient, policy_text: str
) -> None:
    """438 bytes of nested YAML aliases once took the service to 2.4 GB."""
    levels = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    levels += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    bomb = "\n".join(levels) + "\n" + policy_text
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    for dry_run in (True, False):
        with pytest.raises(grpc.RpcError) as info:
            client.apply_policy(bomb, dry_run=dry_run)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "YAML alias '*a0' is not allowed" in info.value.details()
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024
    assert client.get_policy().version == 1
