"""``sliceai federate server`` / ``client``: the federation over the network, on Flower's
own deployment engine (Flower 1.42: SuperLink, SuperNodes, a FAB run with ``flwr run``).

The server starts ``flower-superlink`` with TLS and SuperNode authentication, registers
each site's public key with ``flwr supernode register``, writes a FAB whose components
are :mod:`sliceai.federated.deploy` (the simulation's ServerApp and ClientApp) and whose
run configuration holds the settings, starts it with ``flwr run`` and waits for it to
finish; the ServerApp (run by the SuperLink, on this machine) writes the checkpoint.
A client starts one ``flower-supernode`` for its site, with the site's private key and
its traces in the SuperNode's node config; the traces stay on the site.

What "mutual TLS" is in Flower 1.42 (its ``--root-certificates`` help says so: "This is
not a client certificate for mTLS"): the SuperLink presents a certificate the sites
check against ``--ca`` (server-side TLS, the transport is encrypted), but it cannot ask a
site for a certificate. A site proves who it is with its SuperNode authentication key:
every Fleet request is signed with it, and the SuperLink (``--enable-supernode-auth``)
serves only the public keys registered here, one per ``--site NAME=KEY.pub``; an
unregistered key, or none, is refused before it receives anything. The SuperLink's one
port also serves Flower's Control and Runtime APIs, which open-source Flower 1.42 does not
authenticate: anyone who reaches it can start a run. Let only the sites reach it (a
firewall, a VPN); docs/deployment.md says so too.

This module imports neither flwr nor torch (the FAB's :mod:`sliceai.federated.deploy` does).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import tomli_w  # the federated extra
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key

from sliceai.usage import UsageError

#: Keys of a SuperNode's node config (the run's configuration is :func:`run_config`'s).
NODE_SITE, NODE_TRACES, NODE_INIT = "site", "traces", "init"
#: The FAB's module: it re-exports the apps of :mod:`sliceai.federated.deploy`.
APP_MODULE = "sliceai_federate_app"
CONNECTION = "sliceai"


def init_of(text: str) -> Path | None:
    return None if text == "default" else Path(text)


def parse_address(text: str, flag: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"{flag} {text!r}: expected HOST:PORT")
    return host, int(port)


def local_address(host: str, port: int) -> str:
    """Where this machine reaches a server listening on ``host`` (as flwr's own tools do)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_public_key(path: Path, flag: str) -> None:
    """A SuperNode's public key: OpenSSH, EC on a NIST curve (``ssh-keygen -t ecdsa``)."""
    try:
        key = load_ssh_public_key(path.read_bytes())
    except (OSError, ValueError, UnsupportedAlgorithm) as exc:
        raise UsageError(f"{flag} {path}: not an OpenSSH public key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise UsageError(f"{flag} {path}: not an EC key (ssh-keygen -t ecdsa -b 384)")


def check_private_key(path: Path, flag: str) -> None:
    try:
        key = load_ssh_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise UsageError(f"{flag} {path}: not an unencrypted OpenSSH private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise UsageError(f"{flag} {path}: not an EC key (ssh-keygen -t ecdsa -b 384)")


def check_files(*pairs: tuple[str, Path]) -> None:
    for flag, path in pairs:
        if not path.is_file():
            raise UsageError(f"{flag} {path}: no such file")


def flower_bin(name: str) -> str:
    """A Flower entry point: next to this interpreter, else on PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.is_file() else shutil.which(name)
    if found is None:
        raise UsageError(f"{name} not found: install sliceai[federated]")
    return found


def flower_env(home: Path) -> dict[str, str]:
    """Flower's state and config in ``home``; no telemetry; this interpreter's entry points
    first on PATH (the SuperLink and SuperNode start ``flower-superexec`` and the apps)."""
    env = dict(os.environ)
    env["FLWR_HOME"] = str(home)
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def terminating_on_sigterm() -> Iterator[None]:
    """SIGTERM interrupts like SIGINT (KeyboardInterrupt), so ``finally`` stops the children."""

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass(frozen=True)
class ServerPlan:
    host: str
    port: int
    cert: Path
    key: Path
    ca: Path
    sites: Sequence[tuple[str, Path]]  # name, public key
    config: dict[str, Any]  # the run configuration (run_config)
    out: Path
    timeout: float | None = None
    flower_log: Path | None = None


def run_config(args: argparse.Namespace, sites: Sequence[str], ensemble: str) -> dict[str, Any]:
    """The run's configuration: what the ServerApp and every ClientApp read."""
    return {
        "rounds": args.rounds,
        "sites": len(sites),
        "site-names": ",".join(sites),
        "secure-aggregation": bool(args.secure_aggregation),
        "dp-noise": float(args.dp_noise or 0.0),
        "dp-clip": float(args.dp_clip),
        "proximal-mu": float(args.proximal_mu),
        "local-steps": args.local_steps,
        "batch-size": args.batch_size,
        "seed": args.seed,
        "init": "default" if args.init == "default" else str(Path(args.init).resolve()),
        "member": args.member,
        "ensemble": ensemble,
        "out": str(Path(args.out).resolve()),
    }


def write_app(directory: Path, config: dict[str, Any]) -> Path:
    """The FAB's sources: a ``pyproject.toml`` naming the apps, ``config`` as the run's."""
    directory.mkdir(parents=True, exist_ok=True)
    project = {
        "build-system": {"requires": ["hatchling"], "build-backend": "hatchling.build"},
        "project": {
            "name": "sliceai-federate",
            "version": "1.0.0",
            "description": "sliceai federated forecast training",
            "license": "Apache-2.0",
            "dependencies": [],
        },
        "tool": {
            "flwr": {
                "app": {
                    "publisher": "sliceai",
                    "components": {
                        "serverapp": f"{APP_MODULE}:server_app",
                        "clientapp": f"{APP_MODULE}:client_app",
                    },
                    "config": config,
                }
            }
        },
    }
    (directory / "pyproject.toml").write_text(tomli_w.dumps(project))
    (directory / f"{APP_MODULE}.py").write_text(
        '"""sliceai federate: the apps of the installed sliceai."""\n\n'
        "from sliceai.federated.deploy import client_app, server_app\n\n"
        '__all__ = ["client_app", "server_app"]\n'
    )
    return directory


class Flower:
    """Flower's command-line client against one SuperLink (its state in ``home``)."""

    def __init__(self, home: Path, address: str, ca: Path) -> None:
        self.env = flower_env(home)
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f"address = {json.dumps(address)}\nroot-certificates = {json.dumps(str(ca))}\n"
        )
        self.home = home

    def call(self, *args: str) -> dict[str, Any]:
        proc = subprocess.run(
            [flower_bin("flwr"), *args, "--format", "json"],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        try:
            reply: dict[str, Any] = json.loads(proc.stdout)
        except json.JSONDecodeError:
            reply = {"success": False, "error-message": (proc.stdout + proc.stderr)[-800:]}
        if proc.returncode != 0 or not reply.get("success"):
            raise RuntimeError(
                f"flwr {' '.join(args[:2])}: {reply.get('error-message', reply)}".strip()
            )
        return reply


def serve(plan: ServerPlan, say: IO[str]) -> int:
    """Run the federation of ``plan``; 0 when the checkpoint is written, 1 otherwise."""
    home = Path(tempfile.mkdtemp(prefix="sliceai-federate-"))
    log_path = plan.flower_log or home / "superlink.log"
    address = local_address(plan.host, plan.port)
    link: subprocess.Popen[bytes] | None = None
    flwr: Flower | None = None
    run_id, status = "", ""
    try:
        with open(log_path, "ab") as log, terminating_on_sigterm():
            link = subprocess.Popen(
                [
                    flower_bin("flower-superlink"),
                    *("--ssl-ca-certfile", str(plan.ca)),
                    *("--ssl-certfile", str(plan.cert), "--ssl-keyfile", str(plan.key)),
                    "--enable-supernode-auth",
                    *("--host", plan.host, "--port", str(plan.port)),
                    *("--database", str(home / "state.db")),
                    "--disable-runtime-dependency-installation",
                ],
                env=flower_env(home),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            if not _listening(link, plan.host, plan.port, 60.0):
                say.write(f"sliceai federate: the SuperLink did not start:\n{tail(log_path)}\n")
                return 1
            flwr = Flower(home, address, plan.ca)
            for name, key in plan.sites:
                node = flwr.call("supernode", "register", str(key), CONNECTION, "--name", name)
                say.write(f"site {name}: SuperNode {node.get('node-id', '?')} registered\n")
            app = write_app(home / "app", plan.config)
            run_id = str(flwr.call("run", str(app), CONNECTION)["run-id"])
            say.write(
                f"SuperLink on {plan.host}:{plan.port} (TLS); run {run_id}: "
                f"{plan.config['rounds']} rounds over {len(plan.sites)} sites, waiting for them\n"
            )
            say.flush()
            status = _wait(flwr, run_id, link, plan.timeout)
        if status != "finished:completed":
            say.write(f"sliceai federate: run {run_id} {status}; Flower's log:\n{tail(log_path)}\n")
            return 1
        say.write(f"checkpoint in {plan.out} (sliceai serve --model {plan.out})\n")
        return 0
    except RuntimeError as exc:
        say.write(f"sliceai federate: {exc}\n{tail(log_path)}\n")
        return 1
    except KeyboardInterrupt:
        say.write("sliceai federate: interrupted; the SuperLink is stopped\n")
        return 1
    finally:
        if flwr is not None and run_id and not status.startswith("finished"):
            with suppress(RuntimeError, subprocess.SubprocessError, KeyboardInterrupt):
                flwr.call("stop", run_id, CONNECTION)  # else its ServerApp may outlive us
        if link is not None:
            stop(link)
        shutil.rmtree(home, ignore_errors=True)


def _listening(proc: subprocess.Popen[bytes], host: str, port: int, within: float) -> bool:
    connect = local_address(host, port).rpartition(":")[0].strip("[]")
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and proc.poll() is None:
        with suppress(OSError), socket.create_connection((connect, port), timeout=1.0):
            return True
        time.sleep(0.3)
    return False


def _wait(flwr: Flower, run_id: str, link: subprocess.Popen[bytes], timeout: float | None) -> str:
    """The run's final status (``finished:...``), or why it has none."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        time.sleep(3.0)
        if link.poll() is not None:
            return f"lost: the SuperLink exited ({link.returncode})"
        runs = flwr.call("ls", "--run-id", run_id, CONNECTION).get("runs", [])
        status = str(runs[0].get("status", "")) if runs else ""
        if status.startswith("finished"):
            return status
        if deadline is not None and time.monotonic() > deadline:
            return f"stopped after --timeout {timeout:g} s (status {status or 'unknown'})"


def join(
    site: str,
    traces: Sequence[Path],
    superlink: str,
    ca: Path,
    key: Path,
    init: str,
    max_wait: float | None,
    say: IO[str],
) -> int:
    """Run ``site``'s SuperNode until it stops (or this process gets SIGTERM / SIGINT)."""
    home = Path(tempfile.mkdtemp(prefix="sliceai-site-"))
    node: subprocess.Popen[bytes] | None = None
    try:
        config = home / "node.toml"
        config.write_text(
            tomli_w.dumps(
                {
                    NODE_SITE: site,
                    NODE_TRACES: "\n".join(str(p.resolve()) for p in traces),
                    NODE_INIT: init if init == "default" else str(Path(init).resolve()),
                }
            )
        )
        command = [
            flower_bin("flower-supernode"),
            *("--superlink", superlink, "--root-certificates", str(ca)),
            *("--auth-supernode-private-key", str(key)),
            *("--node-config", str(config)),
            *("--host", "127.0.0.1", "--port", str(free_port())),
        ]
        if max_wait is not None:
            command += ["--max-wait-time", f"{max_wait:g}"]
        with terminating_on_sigterm():
            say.write(f"site {site}: SuperNode for {superlink} ({len(traces)} traces stay here)\n")
            say.flush()
            node = subprocess.Popen(command, env=flower_env(home))
            code = node.wait()
        if code != 0:
            say.write(
                f"sliceai federate: site {site}: the SuperNode stopped ({code}): refused "
                "(key not registered at the server, or the server's certificate not "
                "signed by --ca) or the SuperLink unreachable; see its log above\n"
            )
            return 1
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        if node is not None:
            stop(node)
        shutil.rmtree(home, ignore_errors=True)
