"""Storage faults as a client sees them: a database that cannot be written turns health
NOT_SERVING and every write UNAVAILABLE with SQLite's reason, nothing is acknowledged
that is not stored, and health comes back once a write succeeds; unreadable grant rows
are quarantined at start; a read-only database is refused with exit 2.

Root ignores file modes, so the faults are made on the store's own connection (``PRAGMA
query_only``, ``PRAGMA max_page_count``) or with a ``mode=ro`` URI: real SQLite errors."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from sliceai.api.client import SliceaiClient
from sliceai.cli import main
from sliceai.engine import StateStore
from sliceai.v1 import mec_pb2

POLICY = Path(__file__).resolve().parents[2] / "policies" / "hospital.yaml"


def _pragma(store: StateStore, pragma: str) -> None:
    with store._lock:
        store._db.execute(f"PRAGMA {pragma}")


def _request(c: SliceaiClient, port: int) -> mec_pb2.BwAllocation:
    flt = mec_pb2.SessionFilter(source_ip="10.0.0.1", source_port=[port], protocol="UDP")
    return c.request_bandwidth("app-1", "staff-embb", 1000, "dl", session_filters=[flt])


def _code(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_a_read_only_database_at_run_time(
    start_server: Callable[..., Any], policy_text: str
) -> None:
    running = start_server()
    store = running.engine.store
    with SliceaiClient(running.target) as c:
        kept = _request(c, 1)
        assert c.health() == "SERVING"
        _pragma(store, "query_only=1")
        code, details = _code(lambda: _request(c, 2))
        assert code == grpc.StatusCode.UNAVAILABLE
        assert "read-only" in details
        assert "attempt to write a readonly database" in details
        assert "cannot rollback" not in details
        assert c.health() == "NOT_SERVING"
        assert _code(lambda: c.release_bandwidth(kept.allocation_id))[0] == (
            grpc.StatusCode.UNAVAILABLE
        )
        new_policy = policy_text.replace("capacity: 500 Mbps", "capacity: 450 Mbps")
        assert _code(lambda: c.apply_policy(new_policy))[0] == grpc.StatusCode.UNAVAILABLE
        # nothing that failed to store took effect
        assert [g.allocation_id for g in c.list_bandwidth()] == [kept.allocation_id]
        assert c.get_policy().version == 1
        _pragma(store, "query_only=0")
        again = _request(c, 3)  # the first write that succeeds brings health back
        assert c.health() == "SERVING"
        listed = {g.allocation_id for g in c.list_bandwidth()}
    assert listed == {kept.allocation_id, again.allocation_id}
    assert {g.allocation_id for g in store.load_grants()} == listed


def test_a_full_disk_acknowledges_only_what_was_stored(
    start_server: Callable[..., Any], tmp_path: Path
) -> None:
    db = tmp_path / "full.db"
    running = start_server(db=db)
    store = running.engine.store
    with store._lock:
        (pages,) = store._db.execute("PRAGMA page_count").fetchone()
    _pragma(store, f"max_page_count={pages}")
    acked: list[str] = []
    failed: list[tuple[grpc.StatusCode, str]] = []
    with SliceaiClient(running.target) as c:
        for port in range(1, 1000):
            try:
                acked.append(_request(c, port).allocation_id)
            except grpc.RpcError as exc:
                failed.append((exc.code(), exc.details()))
                break
        assert len(failed) == 1, "the disk never filled"
        code, details = failed[0]
        assert code == grpc.StatusCode.UNAVAILABLE, details
        assert "disk full" in details
        assert "database or disk is full" in details
        assert c.health() == "NOT_SERVING"
        assert sorted(g.allocation_id for g in c.list_bandwidth()) == sorted(acked)
    reopened = StateStore(db)
    assert sorted(g.allocation_id for g in reopened.load_grants()) == sorted(acked)
    reopened.close()


def test_unreadable_grant_rows_are_quarantined_and_the_rest_served(
    start_server: Callable[..., Any], tmp_path: Path
) -> None:
    db = tmp_path / "rows.db"
    first = start_server(db=db)
    with SliceaiClient(first.target) as c:
        good = _request(c, 1)
    con = sqlite3.connect(db)
    (body,) = con.execute("SELECT body FROM grants").fetchone()
    rows = [
        ("torn", "{not json"),
        ("sideways", json.dumps({**json.loads(body), "direction": "sideways"})),
    ]
    con.executemany("INSERT INTO grants VALUES (?, 'app-1', ?, 1.0, 1.0)", rows)
    con.commit()
    con.close()
    second = start_server(db=db)
    with SliceaiClient(second.target) as c:
        assert [g.allocation_id for g in c.list_bandwidth()] == [good.allocation_id]
        assert c.health() == "SERVING"
    quarantined = {r.key: r.reason for r in second.engine.store.quarantined()}
    assert set(quarantined) == {"torn", "sideways"}
    assert "not JSON" in quarantined["torn"]
    assert "direction 'sideways' is unknown" in quarantined["sideways"]


def test_serve_refuses_a_read_only_database_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "ro.db"
    StateStore(db).close()
    argv = ["serve", "--policy", str(POLICY), "--model", "empirical", "--listen", "127.0.0.1:0"]
    code = main([*argv, "--db", f"file:{db}?mode=ro"])
    err = capsys.readouterr().err
    assert code == 2
    assert "state database is read-only" in err
    assert "Traceback" not in err
