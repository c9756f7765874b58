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

Faults: a database that cannot be written (read-only file or mount, ``mode=ro`` URI) is
refused when opened (:class:`StoreError`). A read or write that fails later (disk full,
I/O error, the file turned read-only) rolls back what it began and raises
:class:`StoreFault` with SQLite's own reason; the store then reports the fault in
:attr:`StateStore.fault` and to every :attr:`StateStore.on_fault` callback (the server's
health turns NOT_SERVING) until a write succeeds again. A grant row that cannot be a
grant (not JSON, or values no request could carry) is moved to the ``quarantine`` table
with its reason and logged, never served and never fatal.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sliceai.engine.errors import Unavailable
from sliceai.engine.grants import Grant
from sliceai.engine.stored_grant import BadRow, grant_from_row

log = logging.getLogger(__name__)
T = TypeVar("T")

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
CREATE TABLE IF NOT EXISTS quarantine (
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    body TEXT,
    reason TEXT NOT NULL,
    quarantined_unix_s REAL NOT NULL
);
"""


#: One stored telemetry row: interval start (epoch s), slice, interval (s), DL and UL bit/s
#: (None: not measured).
TelemetryRow = tuple[float, str, float, float | None, float | None]


class StoreError(RuntimeError):
    """The database file is unusable (wrong schema, corrupt, not writable)."""


class StoreFault(StoreError, Unavailable):
    """A read or write failed (disk full, I/O error, read-only): nothing was changed.
    An engine error too, so a request that meets it is answered UNAVAILABLE."""


@dataclass(frozen=True)
class QuarantinedRow:
    """A stored row set aside because it could not be read: where it came from, its key,
    its raw body and why."""

    source: str
    key: str
    body: str | None
    reason: str
    quarantined_unix_s: float


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
        """``path``: a file, ``":memory:"``, or an SQLite ``file:`` URI."""
        self.path = str(path)
        #: The last read or write failure while it lasts (None: healthy).
        self.fault: str | None = None
        #: Called with the fault (None: cleared) whenever it changes, outside the lock.
        self.on_fault: list[Callable[[str | None], None]] = []
        try:
            self._db = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                uri=self.path.startswith("file:"),
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is not None and str(row[0]) != str(SCHEMA_VERSION):
                raise StoreError(f"{self.path}: schema version {row[0]}, expected {SCHEMA_VERSION}")
            # Prove the file writable now rather than at the first grant.
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
            )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._abandon()
            if _cause(exc) == "read-only":
                raise StoreError(
                    f"{self.path}: state database is read-only ({exc}); sliceai serve "
                    "writes grants, policy versions and risk levels there: give a writable --db"
                ) from exc
            raise StoreError(f"{self.path}: cannot open state database: {exc}") from exc
        except StoreError:
            self._abandon()
            raise
        self._lock = threading.Lock()

    def _abandon(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- faults ---------------------------------------------------------------------
    def _write(self, work: Callable[[], T]) -> T:
        """Run ``work`` in one IMMEDIATE transaction under the lock and commit; on any
        failure roll back (if SQLite has not already) and, for a database error, raise
        :class:`StoreFault` with its reason. A commit clears a standing fault."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                result = work()
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                cause: sqlite3.Error | None = exc
                fault = self._fault_of(exc, "write")
            except BaseException:
                self._rollback()
                raise
            else:
                cause = None
        if cause is not None:
            self._report(fault)
            raise StoreFault(fault) from cause
        if self.fault is not None:
            self._report(None)
        return result

    def _rollback(self) -> None:
        """Roll back the open transaction, if SQLite has not already (it does after a
        full disk or an I/O error, and a second ROLLBACK would hide the real error)."""
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    def _read(self, work: Callable[[], T]) -> T:
        """Run ``work`` under the lock; a database error becomes :class:`StoreFault`."""
        with self._lock:
            try:
                return work()
            except sqlite3.Error as exc:
                fault = self._fault_of(exc, "read")
        self._report(fault)
        raise StoreFault(fault)

    def _fault_of(self, exc: sqlite3.Error, what: str) -> str:
        return f"state database {what} failed ({_cause(exc)}): {exc}"

    def _report(self, fault: str | None) -> None:
        changed = fault != self.fault
        self.fault = fault
        if fault is not None and changed:
            log.error("%s: %s", self.path, fault)
        elif changed:
            log.warning("%s: state database writable again", self.path)
        if changed:
            for callback in list(self.on_fault):
                callback(fault)

    # -- policy versions ---------------------------------------------------
    def latest_policy(self) -> PolicyRecord | None:
        row = self._read(
            lambda: self._db.execute(
                "SELECT version, name, yaml, sha256, applied_unix_s, applied_by "
                "FROM policy_versions ORDER BY version DESC LIMIT 1"
            ).fetchone()
        )
        return PolicyRecord(*row) if row else None

    def list_policies(self, limit: int = 100) -> list[PolicyRecord]:
        """Newest first; ``yaml`` is included."""
        rows = self._read(
            lambda: self._db.execute(
                "SELECT version, name, yaml, sha256, applied_unix_s, applied_by "
                "FROM policy_versions ORDER BY version DESC LIMIT ?",
                (int(limit),),
            ).fetchall()
        )
        return [PolicyRecord(*r) for r in rows]

    def add_policy(self, name: str, yaml_text: str, applied_by: str) -> PolicyRecord:
        """Store a new version (previous version + 1) and commit it."""

        def work() -> PolicyRecord:
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
            return record

        return self._write(work)

    # -- grants ------------------------------------------------------------
    def load_grants(self) -> list[Grant]:
        """Every stored grant, oldest first. A row that cannot be a grant (not JSON, a
        value no request could carry) is moved to the ``quarantine`` table and logged
        with its allocation id and the reason (see :meth:`quarantined`)."""
        rows = self._read(
            lambda: self._db.execute(
                "SELECT allocation_id, app_ins_id, body, created_unix_s, modified_unix_s "
                "FROM grants ORDER BY created_unix_s, allocation_id"
            ).fetchall()
        )
        grants: list[Grant] = []
        bad: list[tuple[object, object, str]] = []
        for aid, app, body, created, modified in rows:
            try:
                grants.append(grant_from_row(aid, app, body, created, modified))
            except BadRow as exc:
                bad.append((aid, body, str(exc)))
        if bad:
            self._quarantine_grants(bad)
        return grants

    def _quarantine_grants(self, bad: list[tuple[object, object, str]]) -> None:
        now = time.time()

        def work() -> None:
            for aid, body, reason in bad:
                self._db.execute(
                    "INSERT INTO quarantine VALUES ('grants', ?, ?, ?, ?)",
                    (str(aid), None if body is None else str(body), reason, now),
                )
                self._db.execute("DELETE FROM grants WHERE allocation_id IS ?", (aid,))

        self._write(work)
        for aid, _, reason in bad:
            log.warning(
                "%s: grant %r is unreadable (%s): moved to the quarantine table",
                self.path,
                str(aid)[:128],
                reason,
            )

    def quarantined(self) -> list[QuarantinedRow]:
        """Rows set aside as unreadable, oldest first."""
        rows = self._read(
            lambda: self._db.execute(
                "SELECT source, key, body, reason, quarantined_unix_s FROM quarantine "
                "ORDER BY quarantined_unix_s, rowid"
            ).fetchall()
        )
        return [QuarantinedRow(*r) for r in rows]

    def put_grant(self, grant: Grant) -> None:
        """Insert or replace one grant and commit."""
        body = json.dumps(grant.to_json(), sort_keys=True)
        self._write(
            lambda: self._db.execute(
                "INSERT OR REPLACE INTO grants VALUES (?, ?, ?, ?, ?)",
                (
                    grant.allocation_id,
                    grant.app_ins_id,
                    body,
                    grant.created_unix_s,
                    grant.modified_unix_s,
                ),
            )
        )

    def delete_grant(self, allocation_id: str) -> bool:
        """Delete and commit; False when there was no such grant."""
        cur = self._write(
            lambda: self._db.execute("DELETE FROM grants WHERE allocation_id = ?", (allocation_id,))
        )
        return cur.rowcount > 0

    # -- planner state ------------------------------------------------------
    def save_state(self, key: str, state: object) -> None:
        """Store a JSON-ready ``state`` under ``key`` (replacing the last) and commit."""
        body = json.dumps(state, sort_keys=True)
        self._write(
            lambda: self._db.execute(
                "INSERT OR REPLACE INTO planner_state VALUES (?, ?, ?)", (key, body, time.time())
            )
        )

    def load_state(self, key: str) -> object | None:
        """The state last saved under ``key``, or None (never saved, or not JSON)."""
        row = self._read(
            lambda: self._db.execute(
                "SELECT body FROM planner_state WHERE key = ?", (key,)
            ).fetchone()
        )
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
        self._write(
            lambda: self._db.executemany(
                "INSERT OR REPLACE INTO telemetry VALUES (?, ?, ?, ?, ?)", rows
            )
        )

    def prune_telemetry(self, before_unix_s: float) -> int:
        """Delete the telemetry of intervals starting before ``before_unix_s``; returns
        the rows deleted."""
        cur = self._write(
            lambda: self._db.execute(
                "DELETE FROM telemetry WHERE interval_start_unix_s < ?", (before_unix_s,)
            )
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
        rows = self._read(lambda: self._db.execute(query, args).fetchall())
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
        first, last = self._read(lambda: self._db.execute(query, args).fetchone())
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


def _cause(exc: sqlite3.Error) -> str:
    """SQLite's error class in words: "read-only", "disk full", "I/O error", ..."""
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    text = str(exc).lower()
    if name.startswith("SQLITE_READONLY") or "readonly" in text or "read-only" in text:
        return "read-only"
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        return "disk full"
    if name.startswith("SQLITE_IOERR") or "disk i/o" in text:
        return "I/O error"
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return "corrupt"
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return "locked by another process"
    return name or type(exc).__name__
