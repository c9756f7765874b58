"""Helpers and the ``rig`` fixture of the Open vSwitch end-to-end test: testbed, controller plugin, service, iperf3.

Everything made here is removed on teardown, also when a test fails: the
controller and services by PID, then namespaces, veths, bridge and the OVS
daemons (``OvsTestbed.close``). Names carry a random suffix.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sliceai.controller.scripted_service import ScriptedControllerService
from sliceai.controller.testbed import (
    OvsTestbed,
    free_tcp_port,
    read_plugin_stats,
    testbed_available,
)

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "sims" / "ovs" / "e2e-policy.yaml"
SLICEAI = [sys.executable, "-m", "sliceai"]
FALLBACK_AFTER_S = 5.0
POLL_S = 0.5
CORE_HOST = 1  # h1 = OpenFlow port 1 = the core side (servers); h2, h3 are UEs
# The slices' service ports (sims/ovs/e2e-policy.yaml).
PORTS = {"tele-surgery": 5001, "industrial": 5002, "embb": 5003}


def stop_process(proc: subprocess.Popen[Any], timeout_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL, one process by its PID."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout_s)


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@dataclass
class Rig:
    """A running testbed with the plugin connected to a ControllerService at ``service_port``."""

    testbed: OvsTestbed
    service: ScriptedControllerService
    service_port: int
    controller: subprocess.Popen[bytes]
    stats_file: Path
    tmp: Path
    clients: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def stats(self) -> dict[str, Any]:
        return read_plugin_stats(self.stats_file)

    def switch_meters(self) -> dict[int, int]:
        """Meter id -> drop band rate in kbit/s, as the switch reports them."""
        text = self.testbed.ofctl("dump-meters", self.testbed.bridge)
        return {
            int(m.group(1)): int(m.group(2))
            for m in re.finditer(r"meter=(\d+)[^\n]*\n?\s*type=drop rate=(\d+)", text)
        }

    def iperf(
        self, host: int, slice_name: str, seconds: int, *extra: str
    ) -> subprocess.Popen[bytes]:
        """Start an iperf3 client in ``host`` towards h1 on the slice's port (JSON, 2 s omitted)."""
        port = PORTS[slice_name]
        log = self.tmp / f"iperf-{slice_name}-{time.monotonic_ns()}.json"
        argv = ["iperf3", "-c", self.testbed.ip(CORE_HOST), "-p", str(port), "-t", str(seconds)]
        proc = self.testbed.popen_in_host(
            host, [*argv, "-O", "2", "-J", "--logfile", str(log), *extra], log.with_suffix(".out")
        )
        proc.log = log  # type: ignore[attr-defined]
        self.clients.append(proc)
        return proc

    def stop_clients(self) -> None:
        """Stop the iperf3 clients a test left running (it failed before waiting for them)."""
        for proc in self.clients:
            stop_process(proc)
        self.clients.clear()


def iperf_result(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> dict[str, Any]:
    proc.wait(timeout_s)
    log: Path = proc.log  # type: ignore[attr-defined]
    result: dict[str, Any] = json.loads(log.read_text())
    if "error" in result:
        raise AssertionError(f"iperf3 failed: {result['error']}")
    return result


def received_bps(result: dict[str, Any]) -> float:
    """Receiver-side goodput of an iperf3 JSON result, bit/s (omitted seconds excluded)."""
    end = result["end"]
    return float((end.get("sum_received") or end["sum"])["bits_per_second"])


def l2_factor(result: dict[str, Any]) -> float:
    """Ethernet frame bytes per payload byte of an iperf3 test: goodput -> the rate a meter sees.

    Meters count whole frames; iperf3 counts payload. TCP: MSS + 12 (timestamps) +
    20 (TCP) + 20 (IP) + 14 (Ethernet); UDP: block + 8 + 20 + 14.
    """
    test = result["start"]["test_start"]
    if test["protocol"] == "UDP":
        block = int(test["blksize"])
        return (block + 42) / block
    mss = int(result["start"].get("tcp_mss_default") or 1448)
    return (mss + 66) / mss


def describe_intervals(result: dict[str, Any]) -> str:
    """Per-interval rates (Mbit/s) and the sender's retransmits, for a failure message."""
    rates = " ".join(
        f"{iv['sum']['bits_per_second'] / 1e6:.1f}"
        for iv in result.get("intervals", [])
        if not iv["sum"].get("omitted")
    )
    retransmits = result["end"].get("sum_sent", {}).get("retransmits")
    return f"intervals [{rates}], retransmits {retransmits}"


def received_l2_bps(result: dict[str, Any]) -> float:
    """Receiver-side rate at layer 2 (what the slice's meter let through), bit/s."""
    return received_bps(result) * l2_factor(result)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    reason = testbed_available()
    if reason is not None:
        pytest.fail(f"the OVS end-to-end test {reason}; run it with `make e2e` as root")
    tmp = tmp_path_factory.mktemp("ovs-e2e")
    service = ScriptedControllerService(
        policy_yaml=POLICY.read_text()
    )  # sent on connect, as the real one
    service_port = service.start()
    ofp_port = free_tcp_port()
    stats_file = tmp / "controller-stats.json"
    testbed = OvsTestbed(n_hosts=3)
    controller: subprocess.Popen[bytes] | None = None
    servers: list[subprocess.Popen[bytes]] = []
    rig: Rig | None = None
    try:
        with open(tmp / "controller.log", "wb") as log:
            controller = subprocess.Popen(
                [
                    *SLICEAI,
                    "controller",
                    "--policy",
                    str(POLICY),
                    "--optimizer",
                    f"127.0.0.1:{service_port}",
                    "--ofp-listen",
                    f"127.0.0.1:{ofp_port}",
                    "--core-ports",
                    "1",
                    "--fallback-after",
                    str(FALLBACK_AFTER_S),
                    "--poll-interval",
                    str(POLL_S),
                    "--reconnect-max",
                    "1",
                    "--stats-file",
                    str(stats_file),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        testbed.start(ofp_port)
        testbed.wait_connected()
        for port in PORTS.values():
            server = testbed.popen_in_host(
                CORE_HOST, ["iperf3", "-s", "-p", str(port)], tmp / f"iperf3-server-{port}.log"
            )
            servers.append(server)
        rig = Rig(testbed, service, service_port, controller, stats_file, tmp)
        wait_for(
            lambda: rig.stats().get("service_connected"), 20, "the plugin to reach the service"
        )
        yield rig
    finally:
        if rig is not None:
            rig.stop_clients()
        for proc in servers:
            stop_process(proc)
        if controller is not None:
            stop_process(controller)
        service.stop()
        testbed.close()
        if controller is not None:
            print((tmp / "controller.log").read_text()[-4000:], file=sys.stderr)
