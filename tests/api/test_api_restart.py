"""A real `sliceai serve` subprocess: kill -9 mid-requests loses no acknowledged grant; SIGTERM is graceful."""

from __future__ import annotations

import itertools
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


def _grant_traffic(target: str, round_no: int, acked: list[str], stop: threading.Event) -> None:
    """Four clients requesting grants back to back until ``stop`` or the server dies;
    each grant is added to ``acked`` once its answer arrived."""
    lock = threading.Lock()

    def worker(i: int) -> None:
        with SliceaiClient(target, timeout_s=5) as c:
            for k in itertools.count(1):
                if stop.is_set():
                    return
                # 1 kbit/s each in staff-embb (admission never runs out); one session each
                flt = mec_pb2.SessionFilter(
                    source_ip=f"10.{round_no}.{i}.1", source_port=[k], protocol="UDP"
                )
                try:
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
    stop.wait()
    for t in threads:
        t.join(10)


def _kill_rounds(tmp_path: Path, rounds: int, per_round: int) -> int:
    """``rounds`` times: start ``sliceai serve`` on one database, check every grant ever
    acknowledged is listed, send grant requests until ``per_round`` more are
    acknowledged, then ``kill -9`` it mid-traffic. Returns the grants acknowledged."""
    db = tmp_path / "state.db"
    acked: list[str] = []
    for r in range(rounds):
        proc, target = _start(db, tmp_path / f"serve{r}.log")
        with SliceaiClient(target, timeout_s=5) as c:
            stored = {g.allocation_id for g in c.list_bandwidth()}
            assert c.get_policy().version == 1  # same policy text: no new version on restart
        lost = set(acked) - stored
        assert not lost, f"round {r}: {len(lost)} acknowledged grants lost"
        stop = threading.Event()
        traffic = threading.Thread(target=_grant_traffic, args=(target, r, acked, stop))
        traffic.start()
        goal = len(acked) + per_round
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(acked) < goal:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)  # in the middle of the requests
        proc.wait(10)
        stop.set()
        traffic.join(20)
        assert len(acked) >= goal, f"round {r}: only {len(acked)} grants acknowledged"
    proc, target = _start(db, tmp_path / "serve-last.log")
    try:
        with SliceaiClient(target, timeout_s=5) as c:
            stored = {g.allocation_id for g in c.list_bandwidth()}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    assert set(acked) <= stored, f"{len(set(acked) - stored)} acknowledged grants lost"
    assert "shutting down" in (tmp_path / "serve-last.log").read_text()
    return len(acked)


def test_kill_9_in_the_middle_of_requests_loses_no_acknowledged_grant(tmp_path: Path) -> None:
    assert _kill_rounds(tmp_path, rounds=1, per_round=20) >= 20


@pytest.mark.slow
def test_twenty_kill_9_rounds_lose_no_acknowledged_grant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    acked = _kill_rounds(tmp_path, rounds=20, per_round=25)
    with capsys.disabled():
        print(f"\nkill -9: 20 rounds, {acked} grants acknowledged, 0 lost")
    assert acked >= 500
