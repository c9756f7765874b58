"""The SQLite store: versions, grants, durability across reopen."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sliceai.engine import BwRequest, Grant, SessionFilter, StateStore, StoreError


def _grant(aid: str, app: str = "app-1") -> Grant:
    req = BwRequest(
        app,
        "consults",
        5_000_000,
        "both",
        "session",
        "viewer",
        3,
        (SessionFilter("10.0.0.1", (5000,), "", (), "UDP"),),
    )
    return Grant(aid, req, 100.0, 200.0)


def test_policy_versions_count_up_and_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = StateStore(path)
    assert store.latest_policy() is None
    v1 = store.add_policy("a", "name: a\n", "startup")
    v2 = store.add_policy("b", "name: b\n", "admin-1")
    assert (v1.version, v2.version) == (1, 2)
    store.close()
    again = StateStore(path)
    latest = again.latest_policy()
    assert latest is not None
    assert (latest.version, latest.name, latest.yaml, latest.applied_by) == (
        2,
        "b",
        "name: b\n",
        "admin-1",
    )
    assert [r.version for r in again.list_policies()] == [2, 1]
    again.close()


def test_grants_round_trip_and_delete(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = StateStore(path)
    store.put_grant(_grant("g1"))
    store.put_grant(_grant("g2", "app-2"))
    store.close()
    store = StateStore(path)
    grants = {g.allocation_id: g for g in store.load_grants()}
    assert grants["g1"] == _grant("g1")
    assert grants["g2"].app_ins_id == "app-2"
    assert store.delete_grant("g1") is True
    assert store.delete_grant("g1") is False
    assert [g.allocation_id for g in store.load_grants()] == ["g2"]
    store.close()


def test_wal_and_full_sync_are_on(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.db")
    store.add_policy("a", "x", "t")
    store.close()
    con = sqlite3.connect(tmp_path / "s.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_foreign_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    con.execute("INSERT INTO meta VALUES ('schema', '99')")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="schema version 99"):
        StateStore(path)


def test_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        StateStore(path)
