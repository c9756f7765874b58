"""Benchmark "controller": plan received -> meter mods acknowledged by a real switch, 64 slices.

Sets up its own Open vSwitch (userspace datapath, private daemons; needs root,
see :mod:`sliceai.controller.testbed`), runs ``sliceai controller`` against a
scripted ControllerService and sends plans that change every slice's rate in
both directions (128 meter modifications per plan). The plugin measures each
plan from the moment its gRPC thread received it to the switch's barrier reply
after the last meter mod (``apply_latency_ms`` in its stats file).

Peer: the same 128 meter modifications sent with one ``ovs-ofctl mod-meter``
call each, as a script would (the time of the whole plan).
Without root or Open vSwitch the benchmark prints why and yields nothing.
"""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sliceai.bench import Figure, percentile
from sliceai.controller.flows import EnforcementConfig, meter_for, meter_id
from sliceai.controller.scripted_service import ScriptedControllerService
from sliceai.controller.testbed import (
    OvsTestbed,
    free_tcp_port,
    read_plugin_stats,
    testbed_available,
)
from sliceai.policy import DIRECTIONS, Direction, load_policy
from sliceai.policy.bench import synthetic_policy_yaml

N_SLICES = 64
_PLAN_GAP_S = 0.1


def _random_plan(names: tuple[str, ...], rng: random.Random) -> dict[tuple[str, Direction], float]:
    return {(n, d): rng.uniform(1e6, 50e6) for n in names for d in DIRECTIONS}


def _latencies(stats_file: Path) -> list[float]:
    return list(read_plugin_stats(stats_file).get("apply_latency_ms", []))


def _wait(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"controller bench: timed out waiting for {what}")


def run(quick: bool) -> Iterator[Figure]:
    reason = testbed_available()
    if reason is not None:
        print(f"controller bench skipped: the real-switch benchmark {reason}", file=sys.stderr)
        return
    n_plans = 40 if quick else 1000  # p99 of 1000 is the 10th worst: steadier than of 300
    n_peer = 3 if quick else 10
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="sliceai-ctl-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        policy_path = tmp / "policy.yaml"
        policy_path.write_text(synthetic_policy_yaml(N_SLICES, 1, links_per_slice=1))
        policy = load_policy(policy_path)
        names = policy.slice_names
        service = ScriptedControllerService()
        port = service.start()
        ofp_port = free_tcp_port()
        stats_file = tmp / "stats.json"
        log = open(tmp / "controller.log", "wb")  # noqa: SIM115 - closed in finally
        controller = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sliceai",
                "controller",
                "--policy",
                str(policy_path),
                "--optimizer",
                f"127.0.0.1:{port}",
                "--ofp-listen",
                f"127.0.0.1:{ofp_port}",
                "--poll-interval",
                "0.2",
                "--stats-file",
                str(stats_file),
                "--log-level",
                "WARNING",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        testbed = OvsTestbed(n_hosts=1)
        try:
            testbed.start(ofp_port)
            testbed.wait_connected()
            _wait(lambda: service.connected_streams > 0, 20, "the plugin's stream")
            _wait(lambda: stats_file.exists(), 20, "the plugin's first stats")
            base = len(_latencies(stats_file))
            for version in range(1, n_plans + 1):
                service.send_plan(_random_plan(names, rng), version)
                time.sleep(_PLAN_GAP_S)
            _wait(lambda: len(_latencies(stats_file)) >= base + n_plans, 30, "all barrier replies")
            ours = _latencies(stats_file)[-n_plans:]
            peer = [_ofctl_plan(testbed, policy.slice_names, rng) for _ in range(n_peer)]
        finally:
            controller.terminate()
            try:
                controller.wait(5)
            except subprocess.TimeoutExpired:
                controller.kill()
                controller.wait(5)
            log.close()
            service.stop()
            testbed.close()
    case = f"{N_SLICES} slices, {2 * N_SLICES} meter mods per plan, OVS netdev"
    peer_name = f"ovs-ofctl mod-meter x{2 * N_SLICES}"
    yield Figure.compare(
        "controller", case, "plan->barrier p99", percentile(ours, 99), "ms", peer_name,
        percentile(peer, 99), note=f"{len(ours)} plans; peer {len(peer)} plans; target <= 50 ms",
    )  # fmt: skip
    print(
        "controller bench: plan->barrier ms, sorted tail: "
        + ", ".join(f"{v:.1f}" for v in sorted(ours)[-8:]),
        file=sys.stderr,
    )
    yield Figure.compare(
        "controller", case, "plan->barrier median", percentile(ours, 50), "ms", peer_name,
        percentile(peer, 50),
    )  # fmt: skip


def _ofctl_plan(testbed: OvsTestbed, names: tuple[str, ...], rng: random.Random) -> float:
    """Milliseconds to apply one plan's meter mods with one ovs-ofctl call each."""
    config = EnforcementConfig(core_ports=(1,))
    t0 = time.perf_counter()
    for i, _name in enumerate(names):
        for d in DIRECTIONS:
            m = meter_for(meter_id(i, d), rng.uniform(1e6, 50e6), config)
            testbed.ofctl(
                "mod-meter",
                testbed.bridge,
                f"meter={m.meter_id},kbps,burst,stats,bands=type=drop,rate={m.rate_kbps},"
                f"burst_size={m.burst_kbits}",
            )
    return (time.perf_counter() - t0) * 1000.0
