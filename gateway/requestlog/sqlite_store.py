"""The embedded store: one WAL-mode SQLite file, safe for several processes on one machine.

Retention here is a DELETE of the rows past `retention_days`, run at most hourly in small chunks
through the (time) index: SQLite has no partitions, and an embedded log is small."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from gateway.requestlog.row import Feedback, LogRow, RowData
from gateway.requestlog.store import COLUMNS, Query, StoreUnavailable, row_from, row_values, time_range

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS request_log (
    {", ".join(COLUMNS)},
    PRIMARY KEY (request_id, time)
);
CREATE INDEX IF NOT EXISTS request_log_tenant_time ON request_log (tenant, time DESC);
CREATE INDEX IF NOT EXISTS request_log_time ON request_log (time DESC);
CREATE TABLE IF NOT EXISTS request_feedback (
    tenant TEXT NOT NULL, request_id TEXT NOT NULL, score REAL NOT NULL, label TEXT, comment TEXT, time REAL NOT NULL,
    PRIMARY KEY (tenant, request_id)
);
"""
SELECT = f"SELECT {', '.join(COLUMNS)} FROM request_log"
DELETE_CHUNK = 5000
T = TypeVar("T")


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    """A log file made by an older gateway gains the columns added since; its rows read them as NULL."""
    present = {row[1] for row in conn.execute("PRAGMA table_info(request_log)")}
    for column in COLUMNS:
        if column not in present:
            conn.execute(f"ALTER TABLE request_log ADD COLUMN {column}")


class SqliteRequestStore:
    def __init__(self, path: Path, retention_days: int, busy_timeout_s: float = 10.0) -> None:
        self.path = path
        self.retention_s = retention_days * 86400.0
        self.busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()  # one connection, used from the writer's and the API's threads
        self._conn: sqlite3.Connection | None = None
        self._last_maintained = 0.0

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(SCHEMA)
            _add_missing_columns(conn)
            self._conn = conn
        return self._conn

    def setup(self) -> None:
        with self._lock:
            self._call(lambda conn: None)

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return work(self._connection())
        except (sqlite3.Error, OSError) as error:  # OSError: the folder cannot be created
            raise StoreUnavailable(f"sqlite request log {self.path}: {error}") from error

    def write(self, rows: Sequence[RowData]) -> None:
        values = [row_values(row) for row in rows]
        sql = f"INSERT OR IGNORE INTO request_log ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(sql, values)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        with self._lock:
            self._call(insert)

    def maintain(self, now: float) -> None:
        if now - self._last_maintained < 3600:
            return
        self._last_maintained = now
        cutoff = now - self.retention_s
        sql = f"DELETE FROM request_log WHERE rowid IN (SELECT rowid FROM request_log WHERE time < ? LIMIT {DELETE_CHUNK})"
        while True:
            with self._lock:  # chunk by chunk, so API reads interleave
                deleted = self._call(lambda conn: conn.execute(sql, (cutoff,)).rowcount)
            if deleted < DELETE_CHUNK:
                return

    def list(self, query: Query) -> list[LogRow]:
        where: list[str] = []
        args: list[object] = []
        if query.tenant is not None:
            where.append("tenant = ?"); args.append(query.tenant)
        if query.since is not None:
            where.append("time >= ?"); args.append(query.since)
        if query.until is not None:
            where.append("time < ?"); args.append(query.until)
        if query.model is not None:
            where.append("(served_model = ? OR requested_model = ?)"); args += [query.model, query.model]
        if query.status is not None:
            where.append("status = ?"); args.append(query.status)
        if query.after is not None:
            where.append("(time < ? OR (time = ? AND request_id < ?))"); args += [query.after[0], query.after[0], query.after[1]]
        sql = SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY time DESC, request_id DESC LIMIT ?"
        args.append(query.limit)
        with self._lock:
            found = self._call(lambda conn: conn.execute(sql, args).fetchall())
        return [row_from(values) for values in found]

    def get(self, request_id: str, tenant: str | None) -> tuple[LogRow, Feedback | None] | None:
        sql = SELECT + " WHERE request_id = ?" + (" AND tenant = ?" if tenant is not None else "") + " ORDER BY time DESC LIMIT 1"
        args = [request_id] + ([tenant] if tenant is not None else [])
        with self._lock:
            found = self._call(lambda conn: conn.execute(sql, args).fetchone())
            if found is None:
                return None
            row = row_from(found)
            fb = self._call(lambda conn: conn.execute(
                "SELECT score, label, comment, time FROM request_feedback WHERE tenant = ? AND request_id = ?",
                (row.tenant, request_id)).fetchone())
        feedback = Feedback(score=fb[0], label=fb[1], comment=fb[2], time=fb[3]) if fb else None
        return row, feedback

    def put_feedback(self, tenant: str, request_id: str, feedback: Feedback) -> bool:
        def upsert(conn: sqlite3.Connection) -> bool:
            if conn.execute("SELECT 1 FROM request_log WHERE request_id = ? AND tenant = ? LIMIT 1",
                            (request_id, tenant)).fetchone() is None:
                return False
            conn.execute(
                "INSERT INTO request_feedback (tenant, request_id, score, label, comment, time) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (tenant, request_id) DO UPDATE SET score = excluded.score, label = excluded.label, "
                "comment = excluded.comment, time = excluded.time",
                (tenant, request_id, feedback.score, feedback.label, feedback.comment, feedback.time))
            return True

        with self._lock:
            return bool(self._call(upsert))

    def iter_rows(self, since: float | None, until: float | None, tenant: str | None) -> Iterator[LogRow]:
        """Oldest first, in constant memory: a connection of its own, read as the cursor steps."""
        where, args = time_range(since, until, tenant, "?")
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s)
        try:
            for values in conn.execute(SELECT + where + " ORDER BY time, request_id", args):
                yield row_from(values)
        finally:
            conn.close()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

