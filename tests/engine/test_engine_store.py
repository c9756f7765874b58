"""The SQLite store: versions, grants, durability across reopen."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from sliceai.engine import BwRequest, Grant, SessionFilter, StateStore, StoreError, Unavailable
from sliceai.engine.store import StoreFault


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


# -- faults ------------------------------------------------------------------------
# Root ignores file modes, so a read-only database is made with a ``mode=ro`` URI or
# ``PRAGMA query_only`` on the store's own connection, and a full disk with
# ``PRAGMA max_page_count`` (both per connection: they must be set on the store's).


def _pragma(store: StateStore, pragma: str) -> None:
    with store._lock:
        store._db.execute(f"PRAGMA {pragma}")


def test_a_read_only_database_is_refused_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    StateStore(path).close()
    with pytest.raises(StoreError, match="state database is read-only") as info:
        StateStore(f"file:{path}?mode=ro")
    assert "give a writable --db" in str(info.value)


def test_a_write_that_fails_reports_the_real_cause_and_changes_nothing(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.db")
    store.put_grant(_grant("g1"))
    seen: list[str | None] = []
    store.on_fault.append(seen.append)
    _pragma(store, "query_only=1")
    for write in (
        lambda: store.put_grant(_grant("g2")),
        lambda: store.delete_grant("g1"),
        lambda: store.add_policy("b", "y", "t"),
        lambda: store.save_state("k", {"a": 1}),
    ):
        with pytest.raises(StoreFault) as info:
            write()
        assert "(read-only): attempt to write a readonly database" in str(info.value)
        assert "cannot rollback" not in str(info.value)
    assert isinstance(info.value, Unavailable)  # the API answers UNAVAILABLE
    assert store.fault is not None
    assert seen == [store.fault]  # reported once, not once per failure
    _pragma(store, "query_only=0")
    assert [g.allocation_id for g in store.load_grants()] == ["g1"]
    store.put_grant(_grant("g3"))  # writable again: the fault clears
    assert store.fault is None
    assert seen[-1] is None
    store.close()


def test_a_full_disk_fails_the_write_that_does_not_fit_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = StateStore(path)
    with store._lock:
        (pages,) = store._db.execute("PRAGMA page_count").fetchone()
    _pragma(store, f"max_page_count={pages}")
    stored: list[str] = []
    failure: StoreFault | None = None
    for i in range(1000):
        try:
            store.put_grant(_grant(f"g{i}"))
        except StoreFault as exc:
            failure = exc
            break
        stored.append(f"g{i}")
    assert failure is not None
    assert "(disk full): database or disk is full" in str(failure)
    assert store.fault is not None
    store.close()
    again = StateStore(path)
    assert sorted(g.allocation_id for g in again.load_grants()) == sorted(stored)
    again.close()


def _insert_row(path: Path, aid: str, body: str, app: str = "app-1", created: object = 5.0) -> None:
    con = sqlite3.connect(path)
    con.execute("INSERT INTO grants VALUES (?, ?, ?, ?, ?)", (aid, app, body, created, 6.0))
    con.commit()
    con.close()


def test_unreadable_grant_rows_are_quarantined_with_their_id_and_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.db"
    store = StateStore(path)
    store.put_grant(_grant("good"))
    store.close()
    body = json.loads(json.dumps(_grant("x").to_json()))
    bad = {
        "not-json": ("{this is not json", "not JSON"),
        "sideways": (json.dumps({**body, "direction": "sideways"}), "direction 'sideways'"),
        "negative": (json.dumps({**body, "fixed_allocation_bps": -1}), "fixed_allocation_bps"),
        "text-port": (
            json.dumps(
                {**body, "session_filters": [{**body["session_filters"][0], "dst_ports": ["x"]}]}
            ),
            "dst_ports",
        ),
        "missing": (json.dumps({"app_ins_id": "app-1"}), "expected"),
        "other-app": (json.dumps({**body, "app_ins_id": "app-2"}), "differs"),
    }
    for aid, (text, _) in bad.items():
        _insert_row(path, aid, text)
    _insert_row(path, "bad-time", json.dumps(body), created="yesterday")
    store = StateStore(path)
    with caplog.at_level("WARNING"):
        grants = store.load_grants()
    assert [g.allocation_id for g in grants] == ["good"]
    assert grants[0] == _grant("good")
    rows = {r.key: r for r in store.quarantined()}
    assert set(rows) == {*bad, "bad-time"}
    for aid, (text, reason) in bad.items():
        assert rows[aid].body == text
        assert reason in rows[aid].reason
        assert f"grant '{aid}' is unreadable" in caplog.text
    assert "created" in rows["bad-time"].reason
    store.close()
    again = StateStore(path)  # moved, not re-reported
    assert [g.allocation_id for g in again.load_grants()] == ["good"]
    assert len(again.quarantined()) == len(bad) + 1
    again.close()
