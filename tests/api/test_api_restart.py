"""A real `sliceai serve` subprocess: kill -9 mid-requests loses no acknowledged grant; SIGTERM is graceful."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from sliceai.api.client import SliceaiClient
from sliceai.v1 import mec_pb2

POLICY = Path(__file__).resolve().parents[2] / "policies" / "hospital.yaml"
# Build only the serve/client sub-commands (the full CLI imports every area).
LAUNCH = (
    "import argparse, sys\n"
    "from sliceai.api import commands\n"
    "from sliceai.cli import run\n"
    "p = argparse.ArgumentParser(prog='sliceai')\n"
    "commands.register(p.add_subparsers())\n"
    "sys.exit(run(p.parse_args(sys.argv[1:])))\n"
)


def _start(db: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    args = [sys.executable, "-c", LAUNCH, "serve", "--policy", str(POLICY), "--model", "empirical"]
    args += ["--listen", "127.0.0.1:0", "--db", str(db), "--interval", "200ms"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as err:  # the child keeps its own descriptor
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        m = re.search(r"listening on (127\.0\.0\.1:\d+)", log.read_text())
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {log.read_text()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"server did not start: {log.read_text()}")


@pytest.mark.slow
def test_kill_9_in_the_middle_of_requests_loses_no_acknowledged_grant(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    proc, target = _start(db, tmp_path / "serve1.log")
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(i: int) -> None:
        with SliceaiClient(target, timeout_s=5) as c:
            k = 0
            while not stop.is_set():
                k += 1
                try:
                    # 1 kbit/s each in staff-embb (admission never runs out); one session per request
                    flt = mec_pb2.SessionFilter(
                        source_ip="10.0.0.1", source_port=[i * 10_000 + k], protocol="UDP"
                    )
                    g = c.request_bandwidth(
                        "app-1", "staff-embb", 1000, "dl", session_filters=[flt]
                    )
                except grpc.RpcError:
                    return  # the server died under us; this request was never acknowledged
                with lock:
                    acked.append(g.allocation_id)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(acked) < 40:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    stop.set()
    for t in threads:
        t.join(10)
    assert len(acked) >= 40
    proc2, target2 = _start(db, tmp_path / "serve2.log")
    try:
        with SliceaiClient(target2, timeout_s=5) as c:
            stored = {g.allocation_id for g in c.list_bandwidth()}
            assert set(acked) <= stored
            assert c.get_policy().version == 1  # same policy text: no new version on restart
    finally:
        proc2.send_signal(signal.SIGTERM)
        assert proc2.wait(20) == 0
    assert "shutting down" in (tmp_path / "serve2.log").read_text()
