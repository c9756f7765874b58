"""The controller app under Ryu 4.34 on a real Open vSwitch, driven by ``sims/ovs/ryu-check.sh``.

Run with the project's Python (it has ``sliceai serve`` and the testbed helper);
``--ryu-python`` is the interpreter of a venv that has Ryu 4.34 and no os-ken, so
``sliceai.controller._framework`` falls back to Ryu there. It starts:

* the testbed of ``make e2e`` (:class:`sliceai.controller.testbed.OvsTestbed`):
  private OVS daemons, a userspace-datapath bridge, h1 (port 1, the core side)
  and h2 (a UE) in namespaces;
* ``sliceai serve`` on a loopback port with the e2e policy, no ``--simulate``:
  the Ryu-hosted controller is its only telemetry source;
* ``python -m sliceai.controller.ryu_manager --enable-debugger`` with the app's
  options in ``SLICEAI_CONTROLLER_ARGS``.

Then checks: the bridge connected; ``dump-meters`` holds one meter per slice and
direction at the rates of the plan the controller reports from the service;
``dump-flows`` holds the policy's classification flows (table 0, each with its
slice's meter) and the ``NORMAL`` flow (table 1); with h2 pinging h1, the
best-effort meters count packets, the controller reports the rate, and the
service's ``/metrics`` show telemetry samples and a measured best-effort demand.
Exit 0 when all hold, 1 with the failed check's message (and log tails) otherwise.
Everything it makes is removed on exit, also on failure or SIGTERM.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from sliceai.controller.flows import EnforcementConfig, classification_flows, meter_id
from sliceai.controller.testbed import (
    OvsTestbed,
    free_tcp_port,
    read_plugin_stats,
    testbed_available,
)
from sliceai.policy import DIRECTIONS, Direction, load_policy

REPO = Path(__file__).resolve().parents[2]
POLICY_PATH = REPO / "sims" / "ovs" / "e2e-policy.yaml"
SOURCE_ID = "ryu-check"
CORE_PORT = 1
UE_HOST = 2


class CheckFailed(Exception):
    """One check did not hold; the message says which and what was seen."""


FlowKey = tuple[int, int, frozenset[str], str]
_FLOW_STATS = (
    "cookie=", "duration=", "table=", "n_packets=", "n_bytes=", "idle_age=", "hard_age=",
    "priority=", "reset_counts", "send_flow_rem", "idle_timeout=", "hard_timeout=",
)  # fmt: skip
_PROTOCOLS = {(0x0800, 6): "tcp", (0x0800, 17): "udp", (0x86DD, 6): "tcp6", (0x86DD, 17): "udp6"}


def ofctl_match(match: dict[str, Any]) -> frozenset[str]:
    """A flow's match fields as ``ovs-ofctl dump-flows`` prints them (the e2e policy's kinds)."""
    out = set()
    if "eth_type" in match:
        key = (match.pop("eth_type"), match.pop("ip_proto", None))
        if key not in _PROTOCOLS:
            raise CheckFailed(f"ryu_check.py cannot spell eth_type/ip_proto {key} as ovs-ofctl")
        out.add(_PROTOCOLS[key])
    for name, value in match.items():
        if name == "in_port":
            out.add(f"in_port={value}")
        elif name in ("tcp_src", "udp_src", "tcp_dst", "udp_dst") and isinstance(value, int):
            out.add(f"tp_{name[4:]}={value}")
        else:
            raise CheckFailed(f"ryu_check.py cannot spell match field {name}={value} as ovs-ofctl")
    return frozenset(out)


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise CheckFailed(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL, one process we started, by its PID."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except FileNotFoundError:
        return "(no log)"


class Check:
    def __init__(self, ryu_python: str, tmp: Path, verbose: bool = False) -> None:
        self.ryu_python = ryu_python
        self.verbose = verbose
        self.tmp = tmp
        self.policy = load_policy(POLICY_PATH)
        self.stats_file = tmp / "controller-stats.json"
        self.testbed: OvsTestbed | None = None
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.metrics_port = 0

    # -- pieces -----------------------------------------------------------------------
    def start_process(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        with open(self.tmp / f"{name}.log", "wb") as log:
            self.procs[name] = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env
            )

    def alive(self, name: str) -> bool:
        """False while the process runs (so it chains with ``or``); raises once it exited."""
        code = self.procs[name].poll()
        if code is not None:
            raise CheckFailed(f"{name} exited with {code} (its log is below)")
        return False

    def stats(self) -> dict[str, Any]:
        return read_plugin_stats(self.stats_file)

    def show(self, what: str, text: str) -> None:
        if self.verbose:
            print(f"--- {what} ---\n{text.rstrip()}", flush=True)

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return str(resp.read().decode())
        except OSError:
            return ""

    def metric(self, name: str, labels: str = "") -> float | None:
        pattern = rf"^{re.escape(name)}{re.escape(labels)}\s+(\S+)$"
        m = re.search(pattern, self.metrics(), re.MULTILINE)
        return float(m.group(1)) if m else None

    def switch_meters(self) -> dict[int, int]:
        """Meter id -> drop band rate in kbit/s, as the switch reports them."""
        assert self.testbed is not None
        text = self.testbed.ofctl("dump-meters", self.testbed.bridge)
        self.show("dump-meters", text)
        return {
            int(m.group(1)): int(m.group(2))
            for m in re.finditer(r"meter=(\d+)[^\n]*\n?\s*type=drop rate=(\d+)", text)
        }

    def switch_flows(self) -> Counter[FlowKey]:
        """(table, priority, match, actions) of every flow on the switch, counted."""
        assert self.testbed is not None
        text = self.testbed.ofctl("dump-flows", self.testbed.bridge)
        self.show("dump-flows", text)
        flows: Counter[FlowKey] = Counter()
        for line in text.splitlines():
            if " actions=" not in line:
                continue
            head, actions = line.split(" actions=", 1)
            fields = [f.strip() for f in head.split(",") if f.strip()]
            table = next((int(f[6:]) for f in fields if f.startswith("table=")), 0)
            priority = next((int(f[9:]) for f in fields if f.startswith("priority=")), 32768)
            match = frozenset(f for f in fields if not f.startswith(_FLOW_STATS))
            flows[(table, priority, match, actions.strip())] += 1
        return flows

    def expected_flows(self) -> Counter[FlowKey]:
        """The policy's classification (what the app means to install), in dump-flows terms."""
        want: Counter[FlowKey] = Counter()
        config = EnforcementConfig(core_ports=(CORE_PORT,))
        for f in classification_flows(self.policy, config):
            actions = []
            if f.meter_id is not None:
                actions.append(f"meter:{f.meter_id}")
            if f.goto_table is not None:
                actions.append(f"goto_table:{f.goto_table}")
            if f.output_port is not None:
                actions.append("NORMAL")
            want[(f.table_id, f.priority, ofctl_match(dict(f.match)), ",".join(actions))] += 1
        return want

    def plan_meters(self) -> dict[int, int]:
        """Meter id -> kbit/s of the plan the controller says is in force."""
        return {
            meter_id(self.policy.slice_index(n), Direction(d)): max(1, round(v / 1000))
            for n, per in self.stats().get("plan_bps", {}).items()
            for d, v in per.items()
            if v is not None
        }

    # -- the run ----------------------------------------------------------------------
    def run(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        service_port, self.metrics_port, ofp_port = (free_tcp_port() for _ in range(3))
        print(f"ryu-check: sliceai serve on 127.0.0.1:{service_port}", flush=True)
        self.start_process(
            "sliceai-serve",
            [
                sys.executable, "-m", "sliceai", "serve",
                "--policy", str(POLICY_PATH),
                "--listen", f"127.0.0.1:{service_port}",
                "--model", "empirical",
                "--interval", "1s",
                "--db", str(self.tmp / "serve.db"),
                "--metrics-port", str(self.metrics_port),
                "-v",
            ],
            env,
        )  # fmt: skip
        wait_for(
            lambda: self.alive("sliceai-serve") or self.metrics(),
            60,
            "sliceai serve's /metrics",
        )

        controller_args = [
            "--policy", str(POLICY_PATH),
            "--optimizer", f"127.0.0.1:{service_port}",
            "--core-ports", str(CORE_PORT),
            "--poll-interval", "0.5",
            "--reconnect-max", "1",
            "--source-id", SOURCE_ID,
            "--stats-file", str(self.stats_file),
        ]  # fmt: skip
        print(f"ryu-check: Ryu on 127.0.0.1:{ofp_port} ({self.ryu_python})", flush=True)
        self.start_process(
            "ryu-manager",
            [
                self.ryu_python, "-m", "sliceai.controller.ryu_manager", "--enable-debugger",
                "--ofp-listen-host", "127.0.0.1", "--ofp-tcp-listen-port", str(ofp_port),
            ],
            {
                **env,
                "PYTHONPATH": str(REPO),
                "SLICEAI_CONTROLLER_ARGS": shlex.join(controller_args),
            },
        )  # fmt: skip

        testbed = self.testbed = OvsTestbed(n_hosts=2)
        print(f"ryu-check: bridge {testbed.bridge} (userspace datapath)", flush=True)
        testbed.start(ofp_port)

        def connected() -> bool:
            state = testbed.vsctl("get", "controller", testbed.bridge, "is_connected")
            return self.alive("ryu-manager") or state.strip() == "true"

        wait_for(connected, 30, f"bridge {testbed.bridge} to connect to Ryu on port {ofp_port}")
        self.alive("ryu-manager")
        print("ok   bridge connected to the app under Ryu", flush=True)

        log = tail(self.tmp / "ryu-manager.log", 100_000)
        if "instantiating app sliceai.controller.app of SliceController" not in log:
            raise CheckFailed(f"ryu-manager did not log instantiating the app:\n{log[-3000:]}")
        print("ok   ryu-manager instantiated sliceai.controller.app (SliceController)", flush=True)

        dpid = int(testbed.vsctl("get", "bridge", testbed.bridge, "datapath_id").strip('"\n'), 16)
        wait_for(
            lambda: (
                self.alive("ryu-manager") or f"{dpid:016x}" in self.stats().get("datapaths", [])
            ),
            15,
            f"the controller's stats file to list datapath {dpid:016x}",
        )
        wait_for(
            lambda: (
                self.stats().get("service_connected")
                and self.stats().get("plan_source") == "service"
            ),
            30,
            "a plan from sliceai serve (stats file: service_connected, plan_source=service)",
        )
        print("ok   controller reached sliceai serve and runs its plan", flush=True)

        want_ids = {meter_id(i, d) for i in range(len(self.policy.slices)) for d in DIRECTIONS}
        try:
            wait_for(lambda: set(self.switch_meters()) == want_ids, 10, "")
            # The service plans every second: compare with the plan in force when reading.
            wait_for(lambda: self.switch_meters() == self.plan_meters(), 10, "")
        except CheckFailed:
            raise CheckFailed(
                f"switch meters {self.switch_meters()} are not the plan's "
                f"{self.plan_meters()} (ids {sorted(want_ids)})"
            ) from None
        print(f"ok   dump-meters: {len(want_ids)} meters at the plan's rates", flush=True)

        want_flows = self.expected_flows()
        got_flows = self.switch_flows()
        if got_flows != want_flows:
            raise CheckFailed(
                "dump-flows differs from the policy's classification:\n"
                f"  missing {dict(want_flows - got_flows)}\n"
                f"  extra   {dict(got_flows - want_flows)}"
            )
        n_table0 = sum(c for (t, _, _, _), c in want_flows.items() if t == 0)
        print(
            f"ok   dump-flows: the policy's {n_table0} classification flows (table 0: match, "
            "priority, meter) and NORMAL (table 1)",
            flush=True,
        )

        ping = self.testbed.popen_in_host(
            UE_HOST,
            ["ping", "-i", "0.2", "-c", "100", self.testbed.ip(CORE_PORT)],
            self.tmp / "ping.log",
        )
        self.procs["ping"] = ping
        best = self.policy.slice_index("best-effort")
        be_meters = {meter_id(best, d) for d in DIRECTIONS}

        def be_counted() -> bool:
            assert self.testbed is not None
            text = self.testbed.ofctl("meter-stats", self.testbed.bridge)
            self.show("meter-stats", text)
            counts = {
                int(m.group(1)): int(m.group(2))
                for m in re.finditer(r"meter:(\d+)[^\n]*packet_in_count:(\d+)", text)
            }
            return all(counts.get(mid, 0) > 0 for mid in be_meters)

        wait_for(be_counted, 10, f"best-effort meters {sorted(be_meters)} to count the pings")
        print("ok   meter-stats: the pings pass the best-effort meters (DL and UL)", flush=True)

        def be_rate() -> bool:
            rates = self.stats().get("rates", {}).get("best-effort", {})
            return all((rates.get(d.value) or {}).get("carried_bps", 0) > 0 for d in DIRECTIONS)

        wait_for(be_rate, 10, "the controller to report a best-effort rate in both directions")
        print("ok   controller measures the best-effort rate from the meter counters", flush=True)

        def service_demand() -> bool:
            self.alive("sliceai-serve")
            samples = self.metric("sliceai_telemetry_samples_total")
            values = [
                self.metric("sliceai_demand_bps", f'{{direction="{d.value}",slice="best-effort"}}')
                for d in DIRECTIONS
            ]
            return bool(samples) and all(
                v is not None and v > 0 and math.isfinite(v) for v in values
            )

        wait_for(
            service_demand,
            15,
            "sliceai serve's /metrics: sliceai_telemetry_samples_total > 0 and a measured "
            "best-effort demand (its only telemetry source is the controller under Ryu)",
        )
        samples = self.metric("sliceai_telemetry_samples_total")
        self.show("/metrics (sliceai_telemetry, sliceai_demand)", "\n".join(
            line for line in self.metrics().splitlines()
            if line.startswith(("sliceai_telemetry", "sliceai_demand", "sliceai_stale"))
        ))  # fmt: skip
        stale = self.metric("sliceai_stale_sources")
        if stale:
            raise CheckFailed(f"sliceai serve counts {stale:g} stale telemetry sources")
        print(
            f"ok   sliceai serve ingested {samples:g} telemetry samples from the controller, "
            "best-effort demand > 0",
            flush=True,
        )
        self.alive("ryu-manager")
        self.alive("sliceai-serve")

    def close(self, failed: bool) -> None:
        for name in ("ping", "ryu-manager", "sliceai-serve"):
            stop(self.procs.get(name))
        if self.testbed is not None:
            self.testbed.close()
        if failed:
            for name in ("ryu-manager", "sliceai-serve"):
                print(
                    f"--- {name} log (tail) ---\n{tail(self.tmp / f'{name}.log')}", file=sys.stderr
                )


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ryu-python", required=True, help="python of the venv holding Ryu 4.34")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="print what ovs-ofctl and /metrics show"
    )
    args = parser.parse_args()
    reason = testbed_available()
    if reason is not None:
        print(f"ryu-check: the OVS testbed {reason}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    with tempfile.TemporaryDirectory(prefix="sliceai-ryu-check-") as tmp:
        check = Check(args.ryu_python, Path(tmp), args.verbose)
        failed = True
        try:
            check.run()
            failed = False
        except CheckFailed as exc:
            print(f"FAIL {exc}", file=sys.stderr)
        except Exception as exc:
            print(f"FAIL {type(exc).__name__}: {exc}", file=sys.stderr)
        except (KeyboardInterrupt, SystemExit):
            print("FAIL interrupted", file=sys.stderr)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)  # let the clean-up finish
            check.close(failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
