"""Embedded SQLite ledger: the same contract as the Redis ledger, for single-machine setups.

One file in WAL mode, shared safely by any number of processes: every operation is one
``BEGIN IMMEDIATE`` transaction, which takes the database's write lock up front, so the
check-then-reserve step is serialised across processes exactly like a Redis script.

sqlite3 calls block, so each ledger owns one dedicated worker thread holding its connection;
the event loop only awaits a future. One thread is enough: SQLite admits one writer at a time
anyway, and a single connection keeps statement caches warm.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from .base import (
    BudgetExceeded,
    BudgetScope,
    Hold,
    Ledger,
    LedgerUnavailable,
    RateLimitExceeded,
    TenantUsage,
    WindowLimit,
    WindowUsage,
    check_amount,
    check_ttl,
    from_micro,
    log_overage,
    window_usage,
)
from .policy import Policy, decode_policy, encode_policy, escape, policy_from
from .settings import LedgerSettings
from .windows import all_buckets, window_length_s

log = logging.getLogger("gateway.ledger")

Clock = Callable[[], float]
T = TypeVar("T")

RATE_WINDOW_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS limits(
  tenant TEXT PRIMARY KEY,
  policy TEXT NOT NULL
) WITHOUT ROWID;
-- field: 't' tenant spend, 'k:<key>' key spend, 'n' settled requests (day buckets).
CREATE TABLE IF NOT EXISTS spent(
  tenant TEXT NOT NULL, bucket TEXT NOT NULL, field TEXT NOT NULL,
  amount INTEGER NOT NULL, expires_at REAL,
  PRIMARY KEY(tenant, bucket, field)
) WITHOUT ROWID;
-- Live reservations, and running totals per reserved field ('t:<bucket>' / 'k:<key>:<bucket>')
-- so that a reserve reads one row per window however many holds are live (as in Redis).
CREATE TABLE IF NOT EXISTS holds(
  tenant TEXT NOT NULL, rid TEXT NOT NULL, amount INTEGER NOT NULL,
  fields TEXT NOT NULL, expires_at REAL NOT NULL,
  PRIMARY KEY(tenant, rid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS holds_by_expiry ON holds(tenant, expires_at);
CREATE TABLE IF NOT EXISTS reserved(
  tenant TEXT NOT NULL, field TEXT NOT NULL, amount INTEGER NOT NULL,
  PRIMARY KEY(tenant, field)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS closed(
  tenant TEXT NOT NULL, rid TEXT NOT NULL, until REAL NOT NULL,
  PRIMARY KEY(tenant, rid)
) WITHOUT ROWID;
-- Idempotence markers are purged by age on every call: that needs its own index.
CREATE INDEX IF NOT EXISTS closed_by_until ON closed(tenant, until);
-- The sliding rate-limit log, plus its running sums so that admission is O(1) per request
-- rather than a SUM over the whole minute (the same design as the Redis scripts).
CREATE TABLE IF NOT EXISTS ratesum(
  tenant TEXT PRIMARY KEY, requests INTEGER NOT NULL, tokens INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ratelog(
  tenant TEXT NOT NULL, ts REAL NOT NULL, id TEXT NOT NULL,
  requests INTEGER NOT NULL, tokens INTEGER NOT NULL,
  PRIMARY KEY(tenant, ts, id)
) WITHOUT ROWID;
"""


class SqliteLedger(Ledger):
    def __init__(self, settings: LedgerSettings, *, clock: Clock = time.time) -> None:
        self._settings = settings
        self._clock = clock
        self._path = Path(settings.path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ttc-ledger-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._ops = 0
        self._closed = False

    # -- plumbing ---------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self._path,
                timeout=self._settings.sqlite_busy_timeout_s,
                isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
                check_same_thread=False,
            )
            self._prepare(conn)
            self._conn = conn
        return self._conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """WAL mode and schema, retried while another process is doing the same.

        Switching to WAL needs an exclusive lock, and SQLite answers SQLITE_BUSY at once there
        instead of waiting out the busy timeout: several processes opening a new file together
        would otherwise fail their first operation with "database is locked".
        """
        deadline = time.monotonic() + self._settings.sqlite_busy_timeout_s
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(f"PRAGMA synchronous={self._settings.sqlite_synchronous}")
                conn.executescript(_SCHEMA)
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _tx(self, fn: Callable[[sqlite3.Connection, float], T]) -> T:
        conn = self._connect()
        now = self._clock()
        conn.execute("BEGIN IMMEDIATE")
        try:
            out = fn(conn, now)
            self._ops += 1
            if self._ops % 1000 == 0:
                self._vacuum_expired(conn, now)
            conn.execute("COMMIT")
            return out
        except BaseException:
            if conn.in_transaction:  # a failed COMMIT may already have ended it
                conn.execute("ROLLBACK")
            raise

    async def _run(self, fn: Callable[[sqlite3.Connection, float], T]) -> T:
        if self._closed:
            raise LedgerUnavailable("budget ledger is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._tx, fn)
        except sqlite3.DatabaseError as e:
            # "database is locked" after the busy timeout, disk full, unreadable file...
            raise LedgerUnavailable(f"budget ledger (SQLite {self._path}) unavailable: {e}") from e

    @staticmethod
    def _vacuum_expired(conn: sqlite3.Connection, now: float) -> None:
        # Housekeeping across all tenants, amortised over many operations.
        conn.execute("DELETE FROM spent WHERE expires_at IS NOT NULL AND expires_at < ?", (now,))
        for (tenant,) in conn.execute("SELECT DISTINCT tenant FROM holds WHERE expires_at <= ?", (now,)).fetchall():
            SqliteLedger._purge(conn, tenant, now)
        conn.execute("DELETE FROM closed WHERE until < ?", (now,))
        stale = conn.execute("SELECT DISTINCT tenant FROM ratelog WHERE ts <= ?", (now - RATE_WINDOW_S,)).fetchall()
        for (tenant,) in stale:
            SqliteLedger._slide(conn, tenant, now)

    @staticmethod
    def _slide(conn: sqlite3.Connection, tenant: str, now: float) -> tuple[int, int]:
        """Drop log entries older than the window, keep the sums in step; return the sums."""
        cutoff = now - RATE_WINDOW_S
        n, req, tok = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(requests), 0), COALESCE(SUM(tokens), 0) FROM ratelog "
            "WHERE tenant = ? AND ts <= ?",
            (tenant, cutoff),
        ).fetchone()
        if n:
            conn.execute("DELETE FROM ratelog WHERE tenant = ? AND ts <= ?", (tenant, cutoff))
            conn.execute(
                "UPDATE ratesum SET requests = requests - ?, tokens = tokens - ? WHERE tenant = ?", (req, tok, tenant)
            )
        row = conn.execute("SELECT requests, tokens FROM ratesum WHERE tenant = ?", (tenant,)).fetchone()
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    @staticmethod
    def _log_rate(conn: sqlite3.Connection, tenant: str, now: float, requests: int, tokens: int) -> None:
        conn.execute(
            "INSERT INTO ratelog(tenant, ts, id, requests, tokens) VALUES (?, ?, ?, ?, ?)",
            (tenant, now, uuid.uuid4().hex, requests, tokens),
        )
        conn.execute(
            "INSERT INTO ratesum(tenant, requests, tokens) VALUES (?, ?, ?) ON CONFLICT(tenant) DO UPDATE SET "
            "requests = requests + excluded.requests, tokens = tokens + excluded.tokens",
            (tenant, requests, tokens),
        )

    # -- shared pieces ----------------------------------------------------------------------

    @staticmethod
    def _policy(conn: sqlite3.Connection, scope: BudgetScope) -> Policy:
        row = conn.execute("SELECT policy FROM limits WHERE tenant = ?", (scope.tenant_id,)).fetchone()
        if row is not None:
            return decode_policy(row[0])
        return policy_from(scope.windows, scope.max_cost_per_request_usd)

    @staticmethod
    def _spent(conn: sqlite3.Connection, tenant: str, bucket: str, field: str) -> int:
        row = conn.execute(
            "SELECT amount FROM spent WHERE tenant = ? AND bucket = ? AND field = ?", (tenant, bucket, field)
        ).fetchone()
        return 0 if row is None else int(row[0])

    @staticmethod
    def _reserved(conn: sqlite3.Connection, tenant: str, field: str) -> int:
        row = conn.execute("SELECT amount FROM reserved WHERE tenant = ? AND field = ?", (tenant, field)).fetchone()
        return 0 if row is None else int(row[0])

    @staticmethod
    def _drop_hold(conn: sqlite3.Connection, tenant: str, rid: str, amount: int, fields: str) -> None:
        """Delete a hold and take its amount out of every field it reserved in."""
        conn.execute("DELETE FROM holds WHERE tenant = ? AND rid = ?", (tenant, rid))
        for field in filter(None, fields.split("|")):
            conn.execute(
                "UPDATE reserved SET amount = amount - ? WHERE tenant = ? AND field = ?", (amount, tenant, field)
            )
        conn.execute("DELETE FROM reserved WHERE tenant = ? AND amount <= 0", (tenant,))

    @staticmethod
    def _purge(conn: sqlite3.Connection, tenant: str, now: float) -> None:
        """Expired holds stop counting: this is how a crashed gateway's money comes back."""
        for rid, amount, fields in conn.execute(
            "SELECT rid, amount, fields FROM holds WHERE tenant = ? AND expires_at <= ?", (tenant, now)
        ).fetchall():
            SqliteLedger._drop_hold(conn, tenant, rid, amount, fields)
        conn.execute("DELETE FROM closed WHERE tenant = ? AND until < ?", (tenant, now))

    def _closed_until(self, hold: Hold, now: float) -> float:
        return max(now, hold.expires_at) + self._settings.closed_retention_s

    # -- budgets ----------------------------------------------------------------------------

    async def reserve(self, scope: BudgetScope, amount_usd: float, *, ttl_s: float | None = None) -> Hold:
        amount = check_amount(amount_usd, round_up=True)
        ttl = check_ttl(self._settings.reservation_ttl_s if ttl_s is None else ttl_s)
        rid = uuid.uuid4().hex
        tenant = scope.tenant_id
        key_windows = policy_from(scope.key_windows, None).windows
        key = escape(scope.key_id) if scope.key_id else None

        def op(conn: sqlite3.Connection, now: float) -> Hold:
            self._purge(conn, tenant, now)
            policy = self._policy(conn, scope)
            if policy.cap is not None and amount > policy.cap:
                raise BudgetExceeded(
                    window="request",
                    scope="request",
                    limit_usd=from_micro(policy.cap),
                    remaining_usd=from_micro(policy.cap),
                    requested_usd=from_micro(amount),
                )
            buckets = all_buckets(now)
            checks: list[tuple[str, str, tuple[tuple[Any, int], ...], str]] = [("tenant", "t", policy.windows, "t:")]
            if key is not None:
                checks.append(("key", f"k:{key}", key_windows, f"k:{key}:"))
            fields: list[str] = []
            tightest: int | None = None
            for who, spent_field, windows, prefix in checks:
                for w, limit in windows:
                    bid = buckets[w][0]
                    field = prefix + bid
                    spent = self._spent(conn, tenant, bid, spent_field)
                    reserved = self._reserved(conn, tenant, field)
                    if spent + reserved + amount > limit:
                        raise BudgetExceeded(
                            window=w,
                            scope=who,  # type: ignore[arg-type]
                            limit_usd=from_micro(limit),
                            remaining_usd=from_micro(max(0, limit - spent - reserved)),
                            requested_usd=from_micro(amount),
                        )
                    fields.append(field)
                    left = limit - spent - reserved - amount
                    tightest = left if tightest is None else min(tightest, left)
            expires = now + ttl
            conn.execute(
                "INSERT INTO holds(tenant, rid, amount, fields, expires_at) VALUES (?, ?, ?, ?, ?)",
                (tenant, rid, amount, "|".join(fields), expires),
            )
            conn.executemany(
                "INSERT INTO reserved(tenant, field, amount) VALUES (?, ?, ?) "
                "ON CONFLICT(tenant, field) DO UPDATE SET amount = amount + excluded.amount",
                [(tenant, f, amount) for f in fields],
            )
            return Hold(
                reservation_id=rid,
                tenant_id=tenant,
                amount_usd=from_micro(amount),
                key_id=scope.key_id,
                created_at=now,
                expires_at=expires,
                remaining_after_usd=None if tightest is None else from_micro(tightest),
            )

        return await self._run(op)

    async def settle(self, hold: Hold, actual_usd: float) -> float:
        actual = check_amount(actual_usd)
        tenant, rid = hold.tenant_id, hold.reservation_id
        key = escape(hold.key_id) if hold.key_id else None
        grace = max(hold.expires_at - hold.created_at, self._settings.closed_retention_s)

        def op(conn: sqlite3.Connection, now: float) -> tuple[int, str]:
            self._purge(conn, tenant, now)
            if conn.execute("SELECT 1 FROM closed WHERE tenant = ? AND rid = ?", (tenant, rid)).fetchone():
                return 0, "dup"
            row = conn.execute(
                "SELECT amount, fields FROM holds WHERE tenant = ? AND rid = ?", (tenant, rid)
            ).fetchone()
            status = "late"  # the hold expired (and was purged) before this settle
            if row is not None:
                self._drop_hold(conn, tenant, rid, row[0], row[1])
                status = "ok"
            rows = []
            # Charge the buckets current at reservation time (see Ledger docstring).
            for w, (bid, end) in all_buckets(hold.created_at).items():
                exp = None if end is None else end + window_length_s(w) + grace
                rows.append((tenant, bid, "t", actual, exp))
                if key is not None:
                    rows.append((tenant, bid, f"k:{key}", actual, exp))
                if w == "day":
                    rows.append((tenant, bid, "n", 1, exp))
            conn.executemany(
                "INSERT INTO spent(tenant, bucket, field, amount, expires_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(tenant, bucket, field) DO UPDATE SET amount = amount + excluded.amount, "
                "expires_at = excluded.expires_at",
                rows,
            )
            conn.execute(
                "INSERT INTO closed(tenant, rid, until) VALUES (?, ?, ?)", (tenant, rid, self._closed_until(hold, now))
            )
            return actual, status

        charged, status = await self._run(op)
        if status == "dup":
            return 0.0
        log_overage(hold, charged, status)
        return from_micro(charged)

    async def release(self, hold: Hold) -> None:
        tenant, rid = hold.tenant_id, hold.reservation_id

        def op(conn: sqlite3.Connection, now: float) -> None:
            self._purge(conn, tenant, now)
            if conn.execute("SELECT 1 FROM closed WHERE tenant = ? AND rid = ?", (tenant, rid)).fetchone():
                return
            row = conn.execute("SELECT amount, fields FROM holds WHERE tenant = ? AND rid = ?", (tenant, rid)).fetchone()
            if row is not None:
                self._drop_hold(conn, tenant, rid, row[0], row[1])
            # Remember the release so that a settle racing behind it cannot charge a cancelled call.
            conn.execute(
                "INSERT INTO closed(tenant, rid, until) VALUES (?, ?, ?)", (tenant, rid, self._closed_until(hold, now))
            )

        await self._run(op)

    async def usage(self, scope: BudgetScope) -> TenantUsage:
        tenant = scope.tenant_id
        key = escape(scope.key_id) if scope.key_id else None

        def op(conn: sqlite3.Connection, now: float) -> TenantUsage:
            self._purge(conn, tenant, now)
            buckets = all_buckets(now)
            policy = self._policy(conn, scope)

            def rows(spent_field: str, prefix: str, windows: Sequence[tuple[Any, int]]) -> list[WindowUsage]:
                out = []
                for w, limit in windows:
                    bid = buckets[w][0]
                    spent = self._spent(conn, tenant, bid, spent_field)
                    reserved = self._reserved(conn, tenant, prefix + bid)
                    out.append(window_usage(w, limit, spent, reserved))
                return out

            return TenantUsage(
                tenant=tenant,
                windows=rows("t", "t:", policy.windows),
                requests=self._spent(conn, tenant, buckets["day"][0], "n"),
                key_id=scope.key_id,
                key_windows=(
                    rows(f"k:{key}", f"k:{key}:", policy_from(scope.key_windows, None).windows) if key else []
                ),
            )

        return await self._run(op)

    async def set_limits(
        self,
        tenant_id: str,
        windows: Sequence[WindowLimit],
        max_cost_per_request_usd: float | None,
    ) -> None:
        encoded = encode_policy(policy_from(windows, max_cost_per_request_usd))

        def op(conn: sqlite3.Connection, now: float) -> None:
            conn.execute(
                "INSERT INTO limits(tenant, policy) VALUES (?, ?) "
                "ON CONFLICT(tenant) DO UPDATE SET policy = excluded.policy",
                (tenant_id, encoded),
            )

        await self._run(op)

    async def clear_limits(self, tenant_id: str) -> None:
        await self._run(lambda conn, now: conn.execute("DELETE FROM limits WHERE tenant = ?", (tenant_id,)) and None)

    async def stored_limits(self, tenant_id: str) -> Policy | None:
        def op(conn: sqlite3.Connection, now: float) -> Policy | None:
            row = conn.execute("SELECT policy FROM limits WHERE tenant = ?", (tenant_id,)).fetchone()
            return None if row is None else decode_policy(row[0])

        return await self._run(op)

    # -- rate limits ------------------------------------------------------------------------

    async def admit_request(
        self, tenant_id: str, *, rpm: int | None, tpm: int | None, estimated_tokens: int
    ) -> None:
        if rpm is None and tpm is None:
            return
        est = max(0, int(estimated_tokens))

        def op(conn: sqlite3.Connection, now: float) -> tuple[str, float] | None:
            req, tok = self._slide(conn, tenant_id, now)
            tok = max(0, tok)
            if rpm is not None and req + 1 > rpm:
                need, seen = req + 1 - rpm, 0
                for ts, n in conn.execute(
                    "SELECT ts, requests FROM ratelog WHERE tenant = ? ORDER BY ts", (tenant_id,)
                ):
                    seen += n
                    if seen >= need:
                        return "rpm", ts + RATE_WINDOW_S - now
                return "rpm", RATE_WINDOW_S
            if tpm is not None:
                if est > tpm:
                    return "tpm", RATE_WINDOW_S
                if tok + est > tpm:
                    freed = 0
                    for ts, n in conn.execute(
                        "SELECT ts, tokens FROM ratelog WHERE tenant = ? ORDER BY ts", (tenant_id,)
                    ):
                        freed += n
                        if tok - freed + est <= tpm:
                            return "tpm", ts + RATE_WINDOW_S - now
                    return "tpm", RATE_WINDOW_S
            self._log_rate(conn, tenant_id, now, 1, est)
            return None

        denied = await self._run(op)
        if denied is not None:
            raise RateLimitExceeded(limit=denied[0], retry_after_s=max(0.001, denied[1]))  # type: ignore[arg-type]

    async def record_tokens(
        self, tenant_id: str, *, tpm: int | None, tokens: int, estimated_tokens: int = 0
    ) -> None:
        delta = int(tokens) - int(estimated_tokens)
        if tpm is None or delta == 0:
            return

        def op(conn: sqlite3.Connection, now: float) -> None:
            self._slide(conn, tenant_id, now)
            self._log_rate(conn, tenant_id, now, 0, delta)

        await self._run(op)

    # -- lifecycle --------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._run(lambda conn, now: conn.execute("SELECT 1").fetchone() and None)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        def shutdown() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._executor, shutdown)
        self._executor.shutdown(wait=True)
