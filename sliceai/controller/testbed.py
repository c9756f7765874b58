"""A real Open vSwitch testbed on one machine: private OVS daemons, one bridge, hosts in namespaces.

Used by the end-to-end test (``tests/e2e``) and ``sliceai bench controller``.
Needs root, ``openvswitch-switch``, ``iproute2`` and ``ethtool``. Every name
carries a random suffix, so a leftover of a crashed run never collides, and
:meth:`OvsTestbed.close` removes everything this object made (namespaces, veths,
bridge, daemons by the PIDs in their pidfiles), also after a partial start.

Layout: the userspace (``netdev``) datapath; host ``hN`` is namespace
``<prefix>-hN`` with ``eth0`` = 10.0.0.N/24, attached as OpenFlow port N.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")


def read_plugin_stats(path: Path) -> dict[str, Any]:
    """The controller plugin's ``--stats-file`` (written atomically); {} before the first."""
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return state


class TestbedError(RuntimeError):
    """The testbed could not be set up (the message says which command failed)."""


def testbed_available() -> str | None:
    """None when a testbed can run here, else why not."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl", "ip", "ethtool"):
        if shutil.which(tool) is None:
            return f"{tool} not found (apt-get install openvswitch-switch iproute2 ethtool)"
    if not SCHEMA.is_file():
        return f"{SCHEMA} missing"
    return None


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OvsTestbed:
    """One bridge with ``n_hosts`` namespace hosts. Use as a context manager."""

    def __init__(self, n_hosts: int = 3, workdir: Path | None = None) -> None:
        if n_hosts < 1 or n_hosts > 200:
            raise ValueError(f"n_hosts {n_hosts} outside 1..200")
        self.suffix = secrets.token_hex(3)
        self.n_hosts = n_hosts
        self._own_dir = workdir is None
        self.dir = (
            Path(tempfile.mkdtemp(prefix=f"sliceai-ovs-{self.suffix}-"))
            if workdir is None
            else workdir
        )
        self.bridge = f"sb{self.suffix}"
        self.env = {
            **os.environ,
            "OVS_RUNDIR": str(self.dir),
            "OVS_LOGDIR": str(self.dir),
            "OVS_DBDIR": str(self.dir),
        }
        self._namespaces: list[str] = []
        self._veths: list[str] = []
        self._bridge_made = False

    # -- names ------------------------------------------------------------------------
    def namespace(self, host: int) -> str:
        return f"sl{self.suffix}-h{host}"

    def switch_port(self, host: int) -> str:
        return f"s{self.suffix}e{host}"

    @staticmethod
    def ip(host: int) -> str:
        return f"10.0.0.{host}"

    # -- commands ---------------------------------------------------------------------
    def run(self, *argv: str, check: bool = True, timeout: float = 20.0) -> str:
        """Run a command with the private OVS environment; returns its stdout."""
        proc = subprocess.run(
            argv, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise TestbedError(
                f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}"
            )
        return proc.stdout

    def in_host(self, host: int, *argv: str, check: bool = True, timeout: float = 60.0) -> str:
        return self.run(
            "ip", "netns", "exec", self.namespace(host), *argv, check=check, timeout=timeout
        )

    def popen_in_host(self, host: int, argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        """Start a background process in a host's namespace, output to ``log``."""
        with open(log, "wb") as fh:
            return subprocess.Popen(
                ["ip", "netns", "exec", self.namespace(host), *argv],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )

    def ofctl(self, *args: str) -> str:
        return self.run("ovs-ofctl", "-O", "OpenFlow13", *args)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self, controller_port: int) -> None:
        """Start the daemons, the bridge and the hosts; point the bridge at the controller."""
        d = self.dir
        self.run("ovsdb-tool", "create", str(d / "conf.db"), str(SCHEMA))
        self.run(
            "ovsdb-server",
            str(d / "conf.db"),
            f"--remote=punix:{d / 'db.sock'}",
            f"--pidfile={d / 'ovsdb-server.pid'}",
            f"--log-file={d / 'ovsdb-server.log'}",
            "--detach",
        )
        self.run("ovs-vsctl", f"--db=unix:{d / 'db.sock'}", "--no-wait", "init")
        self.run(
            "ovs-vswitchd",
            f"unix:{d / 'db.sock'}",
            f"--pidfile={d / 'ovs-vswitchd.pid'}",
            f"--log-file={d / 'ovs-vswitchd.log'}",
            "--detach",
        )
        self.vsctl(
            "add-br", self.bridge, "--", "set", "bridge", self.bridge, "datapath_type=netdev"
        )
        self._bridge_made = True
        self.run("ip", "link", "set", self.bridge, "up")
        for host in range(1, self.n_hosts + 1):
            self._add_host(host)
        self.vsctl(
            "set", "bridge", self.bridge, "protocols=OpenFlow13", "fail_mode=secure",
            "--", "set-controller", self.bridge, f"tcp:127.0.0.1:{controller_port}",
        )  # fmt: skip

    def reconnect(self) -> None:
        """Drop the bridge's controller connection and connect again (a switch reconnect)."""
        target = self.vsctl("get-controller", self.bridge).strip()
        self.vsctl("del-controller", self.bridge)
        self.vsctl("set-controller", self.bridge, target)

    def vsctl(self, *args: str) -> str:
        return self.run("ovs-vsctl", f"--db=unix:{self.dir / 'db.sock'}", *args)

    def _add_host(self, host: int) -> None:
        ns, port, inner = self.namespace(host), self.switch_port(host), f"h{self.suffix}e{host}"
        self.run("ip", "netns", "add", ns)
        self._namespaces.append(ns)
        self.run("ip", "link", "add", inner, "type", "veth", "peer", "name", port)
        self._veths.append(port)
        self.run("ip", "link", "set", inner, "netns", ns)
        self.in_host(host, "ip", "link", "set", inner, "name", "eth0")
        self.in_host(host, "ip", "addr", "add", f"{self.ip(host)}/24", "dev", "eth0")
        self.in_host(host, "ip", "link", "set", "eth0", "up")
        self.in_host(host, "ip", "link", "set", "lo", "up")
        # Without this TCP never connects through the userspace datapath.
        self.in_host(host, "ethtool", "-K", "eth0", "tx", "off", "tso", "off", "gso", "off")
        self.run("ip", "link", "set", port, "up")
        self.vsctl(
            "add-port", self.bridge, port, "--", "set", "interface", port, f"ofport_request={host}"
        )

    def wait_connected(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.vsctl("get", "controller", self.bridge, "is_connected").strip() == "true":
                return
            time.sleep(0.2)
        raise TestbedError(
            f"bridge {self.bridge} did not connect to its controller in {timeout_s} s"
        )

    def close(self) -> None:
        """Remove everything made, ignoring what is already gone."""
        for ns in self._namespaces:
            for pid_text in self.run("ip", "netns", "pids", ns, check=False).split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid_text), signal.SIGKILL)
            self.run("ip", "netns", "del", ns, check=False)
        for veth in self._veths:
            self.run("ip", "link", "del", veth, check=False)
        if self._bridge_made:
            self.run(
                "ovs-vsctl",
                f"--db=unix:{self.dir / 'db.sock'}",
                "--timeout=5",
                "del-br",
                self.bridge,
                check=False,
            )
        for daemon in ("ovs-vswitchd", "ovsdb-server"):
            pidfile = self.dir / f"{daemon}.pid"
            with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
                daemon_pid = int(pidfile.read_text().strip())
                os.kill(daemon_pid, signal.SIGTERM)
                for _ in range(50):
                    os.kill(daemon_pid, 0)
                    time.sleep(0.05)
                os.kill(daemon_pid, signal.SIGKILL)
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> OvsTestbed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
