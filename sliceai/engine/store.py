"""Durable state of the live service: accepted bandwidth grants, policy versions,
the planner's online state (the risk control's levels) and, for ``serve --adapt``, the
telemetry the service planned from (one row per interval and slice: the measured DL and
UL bit/s, NULL where no source reported; written in batches by
:class:`~sliceai.engine.recorder.TelemetryRecorder`, older rows pruned).

One SQLite file (stdlib :mod:`sqlite3`) in WAL mode with ``synchronous=FULL``:
every write method commits before it returns, so a caller that acknowledges
a grant only after the method returned never loses an acknowledged grant, even
to ``kill -9`` or a power cut (WAL + FULL syncs the log on every commit).

The store is thread-safe: one connection, used under a lock. It knows nothing
about gRPC; grants are :class:`~sliceai.engine.grants.Grant` values.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sliceai.engine.grants import Grant

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS policy_versions (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    yaml TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    applied_unix_s REAL NOT NULL,
    applied_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS grants (
    allocation_id TEXT PRIMARY KEY,
    app_ins_id TEXT NOT NULL,
    body TEXT NOT NULL,
    created_unix_s REAL NOT NULL,
    modified_unix_s REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS grants_by_app ON grants (app_ins_id);
CREATE TABLE IF NOT EXISTS planner_state (
    key TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    saved_unix_s REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS telemetry (
    interval_start_unix_s REAL NOT NULL,
    slice TEXT NOT NULL,
    interval_s REAL NOT NULL,
    dl_bps REAL,
    ul_bps REAL,
    PRIMARY KEY (interval_start_unix_s, slice)
) WITHOUT ROWID;
"""


#: One stored telemetry row: interval start (epoch s), slice, interval (s), DL and UL bit/s
#: (None: not measured).
TelemetryRow = tuple[float, str, float, float | None, float | None]


class StoreError(RuntimeError):
    """The database file is unusable (wrong schema, corrupt, not writable)."""


@dataclass(frozen=True)
class PolicyRecord:
    """One applied policy version."""

    version: int
    name: str
    yaml: str
    sha256: str
    applied_unix_s: float
    applied_by: str


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class StateStore:
    """Grants and policy versions in one SQLite file (``":memory:"`` for tests)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise StoreError(f"{self.path}: schema version {row[0]}, expected {SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open state database: {exc}") from exc
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- policy versions ---------------------------------------------------
    def latest_policy(self) -> PolicyRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT version, name, yaml, sha256, applied_unix_s, applied_by "
                "FROM policy_versions ORDER BY version DESC LIMIT 1"
            ).fetchone()
        return PolicyRecord(*row) if row else None

    def list_policies(self, limit: int = 100) -> list[PolicyRecord]:
        """Newest first; ``yaml`` is included."""
        with self._lock:
            rows = self._db.execute(
                "SELECT version, name, yaml, sha256, applied_unix_s, applied_by "
                "FROM policy_versions ORDER BY version DESC LIMIT ?",
                (int(limit),),
            ).fetchall()
        return [PolicyRecord(*r) for r in rows]

    def add_policy(self, name: str, yaml_text: str, applied_by: str) -> PolicyRecord:
        """Store a new version (previous version + 1) and commit it."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                (last,) = self._db.execute(
                    "SELECT COALESCE(MAX(version), 0) FROM policy_versions"
                ).fetchone()
                record = PolicyRecord(
                    int(last) + 1, name, yaml_text, sha256_text(yaml_text), time.time(), applied_by
                )
                self._db.execute(
                    "INSERT INTO policy_versions VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        record.version,
                        record.name,
                        record.yaml,
                        record.sha256,
                        record.applied_unix_s,
                        record.applied_by,
                    ),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return record

    # -- grants ------------------------------------------------------------
    def load_grants(self) -> list[Grant]:
        with self._lock:
            rows = self._db.execute(
                "SELECT allocation_id, body, created_unix_s, modified_unix_s FROM grants "
                "ORDER BY created_unix_s, allocation_id"
            ).fetchall()
        return [Grant.from_json(json.loads(body), aid, c, m) for aid, body, c, m in rows]

    def put_grant(self, grant: Grant) -> None:
        """Insert or replace one grant and commit."""
        body = json.dumps(grant.to_json(), sort_keys=True)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO grants VALUES (?, ?, ?, ?, ?)",
                    (
                        grant.allocation_id,
                        grant.app_ins_id,
                        body,
                        grant.created_unix_s,
                        grant.modified_unix_s,
                    ),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def delete_grant(self, allocation_id: str) -> bool:
        """Delete and commit; False when there was no such grant."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "DELETE FROM grants WHERE allocation_id = ?", (allocation_id,)
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return cur.rowcount > 0

    # -- planner state ------------------------------------------------------
    def save_state(self, key: str, state: object) -> None:
        """Store a JSON-ready ``state`` under ``key`` (replacing the last) and commit."""
        body = json.dumps(state, sort_keys=True)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO planner_state VALUES (?, ?, ?)", (key, body, time.time())
            )

    def load_state(self, key: str) -> object | None:
        """The state last saved under ``key``, or None (never saved, or not JSON)."""
        with self._lock:
            row = self._db.execute(
                "SELECT body FROM planner_state WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        try:
            loaded: object = json.loads(row[0])
        except ValueError:
            return None
        return loaded

    # -- telemetry ----------------------------------------------------------
    def add_telemetry(self, rows: Sequence[TelemetryRow]) -> None:
        """Insert (or replace) ``rows`` in one transaction and commit."""
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO telemetry VALUES (?, ?, ?, ?, ?)", rows
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def prune_telemetry(self, before_unix_s: float) -> int:
        """Delete the telemetry of intervals starting before ``before_unix_s``; returns
        the rows deleted."""
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM telemetry WHERE interval_start_unix_s < ?", (before_unix_s,)
            )
        return int(cur.rowcount)

    def load_telemetry(
        self,
        interval_s: float | None = None,
        since_unix_s: float | None = None,
        until_unix_s: float | None = None,
    ) -> list[TelemetryRow]:
        """Stored rows in time order: those recorded at ``interval_s`` (None: any), of
        intervals starting in ``[since_unix_s, until_unix_s)`` (None: unbounded)."""
        where, args = self._telemetry_filter(interval_s, since_unix_s, until_unix_s)
        query = (
            "SELECT interval_start_unix_s, slice, interval_s, dl_bps, ul_bps FROM telemetry "
            f"WHERE {where} ORDER BY interval_start_unix_s"
        )
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return [(float(t), str(s), float(i), dl, ul) for t, s, i, dl, ul in rows]

    def telemetry_span(
        self, interval_s: float | None = None, since_unix_s: float | None = None
    ) -> tuple[float, float] | None:
        """Start of the first and of the last stored interval (as :meth:`load_telemetry`
        selects them), or None when there is none."""
        where, args = self._telemetry_filter(interval_s, since_unix_s, None)
        query = (
            "SELECT MIN(interval_start_unix_s), MAX(interval_start_unix_s) FROM telemetry "
            f"WHERE {where}"
        )
        with self._lock:
            first, last = self._db.execute(query, args).fetchone()
        return None if first is None else (float(first), float(last))

    @staticmethod
    def _telemetry_filter(
        interval_s: float | None, since: float | None, until: float | None
    ) -> tuple[str, list[float]]:
        where, args = ["1"], []
        if since is not None:
            where.append("interval_start_unix_s >= ?")
            args.append(since)
        if until is not None:
            where.append("interval_start_unix_s < ?")
            args.append(until)
        if interval_s is not None:
            where.append("ABS(interval_s - ?) <= ?")
            args += [interval_s, 1e-9 * interval_s]
        return " AND ".join(where), args
