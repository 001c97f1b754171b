"""The production store: PostgreSQL through psycopg 3.

Schema and why:
- `ttc_request_log` is partitioned by RANGE on `time` (the request's arrival, timestamptz), one
  partition per UTC day, named `ttc_request_log_pYYYYMMDD`. Retention drops whole partitions
  (`DROP TABLE`, instant, no dead tuples, no vacuum debt) instead of a bulk DELETE; the writer
  creates today's and the next days' partitions ahead, and any missing day a batch needs (a late
  spool replay) on demand, under an advisory lock so replicas do not race. There is no DEFAULT
  partition: it would make every later CREATE PARTITION scan it.
- The primary key is (request_id, time). PostgreSQL can only enforce uniqueness across partitions
  when the key includes the partition key, and that is enough: a row's time is fixed at arrival
  and carried through the queue and spool, so a replayed copy collides with the original and
  `ON CONFLICT DO NOTHING` skips it. The key's index also serves lookups by id (one index probe
  per live partition, `retention_days` of them), so no separate ids table is kept.
- (tenant, time DESC) serves a tenant's newest-first pages, (time DESC) the admin's; both are
  keyset-paginated on (time, request_id), so no query scans the whole log.
- `ttc_request_feedback` (tenant, request_id) -> score, label, comment: a tenant scores its own
  request id; another write replaces the earlier one. It is not partitioned (one small row per
  scored request) and outlives the log's retention.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import psycopg

from gateway.requestlog.row import Feedback, LogRow, RowData
from gateway.requestlog.store import (COLUMNS, JSON_COLUMNS, Query, RowsRejected, StoreUnavailable, StoreValue, row_from,
                                      row_values, time_range)

TABLE = "ttc_request_log"
FEEDBACK = "ttc_request_feedback"
LOCK_ID = 0x7474_635F_6C6F_67  # pg_advisory_xact_lock key for schema and partition changes
DAYS_AHEAD = 2
EXPORT_BATCH = 2000
T = TypeVar("T")

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    request_id text NOT NULL, time timestamptz NOT NULL, tenant text NOT NULL, key_id text NOT NULL,
    endpoint text NOT NULL, requested_model text NOT NULL, served_model text NOT NULL, status text NOT NULL,
    error_code text, router_version text, router jsonb, explored boolean NOT NULL, propensity double precision,
    strategy text, strategy_n integer, degraded boolean NOT NULL, calls jsonb NOT NULL,
    prompt_tokens integer NOT NULL, completion_tokens integer NOT NULL, cost_usd double precision NOT NULL,
    latency_s double precision NOT NULL, first_byte_s double precision, log_content boolean NOT NULL,
    prompt_sha256 text, response_sha256 text, messages jsonb, response_text text, response_tool_calls jsonb,
    PRIMARY KEY (request_id, time)
) PARTITION BY RANGE (time);
-- Tables made before the column existed gain it (on every partition); old rows read as NULL.
ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS response_tool_calls jsonb;
CREATE INDEX IF NOT EXISTS {TABLE}_tenant_time ON {TABLE} (tenant, time DESC);
CREATE INDEX IF NOT EXISTS {TABLE}_time ON {TABLE} (time DESC);
CREATE TABLE IF NOT EXISTS {FEEDBACK} (
    tenant text NOT NULL, request_id text NOT NULL, score double precision NOT NULL, label text, comment text,
    time timestamptz NOT NULL, PRIMARY KEY (tenant, request_id)
);
"""
PLACEHOLDERS = ", ".join("%s::jsonb" if c in JSON_COLUMNS else "%s" for c in COLUMNS)
INSERT = f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({PLACEHOLDERS}) ON CONFLICT DO NOTHING"
SELECT = f"SELECT {', '.join(COLUMNS)} FROM {TABLE}"


def to_time(unix_s: float) -> datetime:
    return datetime.fromtimestamp(unix_s, UTC)


def day_of(unix_s: float) -> datetime:
    return to_time(unix_s).replace(hour=0, minute=0, second=0, microsecond=0)


def partition_name(day: datetime) -> str:
    return f"{TABLE}_p{day:%Y%m%d}"


class _Connection:
    """One connection with its lock, reopened after a failure."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url, self.timeout_s = url, timeout_s
        self.lock = threading.Lock()
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def run(self, work: Callable[[psycopg.Connection[tuple[object, ...]]], T]) -> T:
        with self.lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(
                        self.url, autocommit=True, connect_timeout=max(1, int(self.timeout_s)),
                        options=f"-c statement_timeout={int(self.timeout_s * 1000)}")
                return work(self._conn)
            except psycopg.Error as error:
                if self._conn is not None and (self._conn.broken or isinstance(error, psycopg.OperationalError)):
                    self._conn.close()
                    self._conn = None
                raise StoreUnavailable(f"postgres request log: {error}") from error

    def close(self) -> None:
        with self.lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class PostgresRequestStore:
    def __init__(self, url: str, retention_days: int, timeout_s: float = 5.0) -> None:
        self.retention_days = retention_days
        self._writer = _Connection(url, timeout_s)  # the writer's batches never wait behind API reads
        self._reader = _Connection(url, timeout_s)
        self._days: set[datetime] = set()  # partitions known to exist

    def setup(self) -> None:
        def create(conn: psycopg.Connection[tuple[object, ...]]) -> None:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
                conn.execute(SCHEMA)

        self._writer.run(create)

    def _ensure_days(self, days: set[datetime]) -> None:
        missing = days - self._days
        if not missing:
            return

        def create(conn: psycopg.Connection[tuple[object, ...]]) -> None:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
                for day in sorted(missing):
                    conn.execute(
                        f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF {TABLE} "
                        f"FOR VALUES FROM ('{day.isoformat()}') TO ('{(day + timedelta(days=1)).isoformat()}')")

        self._writer.run(create)
        self._days |= missing

    def write(self, rows: Sequence[RowData]) -> None:
        oldest = day_of(datetime.now(UTC).timestamp()) - timedelta(days=self.retention_days)
        # A row older than retention would land in a partition about to be dropped: skip it.
        kept = [row for row in rows if day_of(row["time"]) >= oldest]
        if not kept:
            return
        self._ensure_days({day_of(row["time"]) for row in kept})
        params = []
        for row in kept:
            values = [without_nul(v, c in JSON_COLUMNS) for c, v in zip(COLUMNS, row_values(row), strict=True)]
            values[1] = to_time(row["time"])
            params.append(values)

        def insert(conn: psycopg.Connection[tuple[object, ...]]) -> int:
            try:
                with conn.transaction(), conn.cursor() as cur:
                    cur.executemany(INSERT, params)
                return 0
            except (psycopg.DataError, psycopg.IntegrityError):
                # A row the server refuses, not a lost server: spooling the batch would replay
                # the same refusal forever and hold every later row back. Keep the others.
                rejected = 0
                for values in params:
                    try:
                        with conn.transaction():
                            conn.execute(INSERT, values)
                    except (psycopg.DataError, psycopg.IntegrityError):
                        rejected += 1
                return rejected

        rejected = self._writer.run(insert)
        if rejected:
            raise RowsRejected(rejected, "PostgreSQL refused the row's data")

    def maintain(self, now: float) -> None:
        today = day_of(now)
        self._ensure_days({today + timedelta(days=d) for d in range(DAYS_AHEAD + 1)})
        oldest = today - timedelta(days=self.retention_days)

        def drop(conn: psycopg.Connection[tuple[object, ...]]) -> None:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
                names = [r[0] for r in conn.execute(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = %s::regclass", (TABLE,))]
                for name in names:
                    suffix = str(name).rsplit("_p", 1)[-1]
                    if suffix.isdigit() and datetime.strptime(suffix, "%Y%m%d").replace(tzinfo=UTC) < oldest:
                        conn.execute(f"DROP TABLE IF EXISTS {name}")
                        self._days.discard(datetime.strptime(suffix, "%Y%m%d").replace(tzinfo=UTC))

        self._writer.run(drop)

    def list(self, query: Query) -> list[LogRow]:
        where: list[str] = []
        args: list[object] = []
        if query.tenant is not None:
            where.append("tenant = %s"); args.append(query.tenant)
        if query.since is not None:
            where.append("time >= %s"); args.append(to_time(query.since))
        if query.until is not None:
            where.append("time < %s"); args.append(to_time(query.until))
        if query.model is not None:
            where.append("(served_model = %s OR requested_model = %s)"); args += [query.model, query.model]
        if query.status is not None:
            where.append("status = %s"); args.append(query.status)
        if query.after is not None:
            where.append("(time, request_id) < (%s, %s)"); args += [to_time(query.after[0]), query.after[1]]
        sql = SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY time DESC, request_id DESC LIMIT %s"
        args.append(query.limit)
        found = self._reader.run(lambda conn: conn.execute(sql, args).fetchall())
        return [_row(values) for values in found]

    def get(self, request_id: str, tenant: str | None) -> tuple[LogRow, Feedback | None] | None:
        sql = SELECT + " WHERE request_id = %s" + (" AND tenant = %s" if tenant is not None else "") + " ORDER BY time DESC LIMIT 1"
        args = [request_id] + ([tenant] if tenant is not None else [])

        def read(conn: psycopg.Connection[tuple[object, ...]]) -> tuple[LogRow, Feedback | None] | None:
            found = conn.execute(sql, args).fetchone()
            if found is None:
                return None
            row = _row(found)
            fb = conn.execute(f"SELECT score, label, comment, time FROM {FEEDBACK} WHERE tenant = %s AND request_id = %s",
                              (row.tenant, request_id)).fetchone()
            feedback = None
            if fb is not None:
                when = fb[3]
                feedback = Feedback(score=float(str(fb[0])), label=_text(fb[1]), comment=_text(fb[2]),
                                    time=when.timestamp() if isinstance(when, datetime) else 0.0)
            return row, feedback

        return self._reader.run(read)

    def put_feedback(self, tenant: str, request_id: str, feedback: Feedback) -> bool:
        def upsert(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
            if conn.execute(f"SELECT 1 FROM {TABLE} WHERE request_id = %s AND tenant = %s LIMIT 1",
                            (request_id, tenant)).fetchone() is None:
                return False
            conn.execute(
                f"INSERT INTO {FEEDBACK} (tenant, request_id, score, label, comment, time) VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (tenant, request_id) DO UPDATE SET score = excluded.score, label = excluded.label, "
                "comment = excluded.comment, time = excluded.time",
                (tenant, request_id, feedback.score, feedback.label, feedback.comment, to_time(feedback.time)))
            return True

        return self._reader.run(upsert)

    def iter_rows(self, since: float | None, until: float | None, tenant: str | None) -> Iterator[LogRow]:
        """Oldest first, in constant memory: a server-side (named) cursor on a connection of its
        own, fetched `EXPORT_BATCH` rows at a time."""
        where, args = time_range(to_time(since) if since is not None else None,
                                 to_time(until) if until is not None else None, tenant, "%s")
        try:
            with psycopg.connect(self._reader.url) as conn, conn.cursor(name="ttc_request_log_export") as cur:
                cur.itersize = EXPORT_BATCH
                cur.execute(SELECT + where + " ORDER BY time, request_id", args)
                for values in cur:
                    yield _row(values)
        except psycopg.Error as error:
            raise StoreUnavailable(f"postgres request log export: {error}") from error

    def close(self) -> None:
        self._writer.close()
        self._reader.close()


def without_nul(value: StoreValue, json: bool) -> StoreValue:
    """PostgreSQL text and jsonb cannot hold NUL, which a prompt may: U+FFFD takes its place
    (in serialized JSON, NUL is the escape `\\u0000`)."""
    if not isinstance(value, str):
        return value
    if json:
        return value.replace("\\u0000", "\\ufffd") if "\\u0000" in value else value
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _row(values: Sequence[object]) -> LogRow:
    out = list(values)
    when = out[1]
    out[1] = when.timestamp() if isinstance(when, datetime) else when
    return row_from(out)
