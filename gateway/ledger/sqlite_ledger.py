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
-- One row per reserved field ('t:<bucket>' / 'k:<key>:<bucket>') plus a '*' row per hold.
CREATE TABLE IF NOT EXISTS holds(
  tenant TEXT NOT NULL, field TEXT NOT NULL, rid TEXT NOT NULL,
  amount INTEGER NOT NULL, expires_at REAL NOT NULL,
  PRIMARY KEY(tenant, field, rid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS holds_by_rid ON holds(tenant, rid);
CREATE INDEX IF NOT EXISTS holds_by_expiry ON holds(tenant, expires_at);
CREATE TABLE IF NOT EXISTS closed(
  tenant TEXT NOT NULL, rid TEXT NOT NULL, until REAL NOT NULL,
  PRIMARY KEY(tenant, rid)
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
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._settings.sqlite_synchronous}")
            conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

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
        conn.execute("DELETE FROM holds WHERE expires_at <= ?", (now,))
        conn.execute("DELETE FROM closed WHERE until < ?", (now,))
        conn.execute("DELETE FROM ratelog WHERE ts <= ?", (now - RATE_WINDOW_S,))

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
    def _reserved(conn: sqlite3.Connection, tenant: str, field: str, now: float) -> int:
        row = conn.execute(
            "SELECT COALESCE(SUM(amount), 0) FROM holds WHERE tenant = ? AND field = ? AND expires_at > ?",
            (tenant, field, now),
        ).fetchone()
        return int(row[0])

    @staticmethod
    def _purge(conn: sqlite3.Connection, tenant: str, now: float) -> None:
        conn.execute("DELETE FROM holds WHERE tenant = ? AND expires_at <= ?", (tenant, now))
        conn.execute("DELETE FROM closed WHERE tenant = ? AND until < ?", (tenant, now))

    def _closed_until(self, hold: Hold, now: float) -> float:
        return max(now, hold.expires_at) + self._settings.closed_retention_s

    # -- budgets ----------------------------------------------------------------------------

    async def reserve(self, scope: BudgetScope, amount_usd: float, *, ttl_s: float | None = None) -> Hold:
        amount = check_amount(amount_usd)
        ttl = self._settings.reservation_ttl_s if ttl_s is None else ttl_s
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
            for who, spent_field, windows, prefix in checks:
                for w, limit in windows:
                    bid = buckets[w][0]
                    field = prefix + bid
                    spent = self._spent(conn, tenant, bid, spent_field)
                    reserved = self._reserved(conn, tenant, field, now)
                    if spent + reserved + amount > limit:
                        raise BudgetExceeded(
                            window=w,
                            scope=who,  # type: ignore[arg-type]
                            limit_usd=from_micro(limit),
                            remaining_usd=from_micro(max(0, limit - spent - reserved)),
                            requested_usd=from_micro(amount),
                        )
                    fields.append(field)
            expires = now + ttl
            conn.executemany(
                "INSERT INTO holds(tenant, field, rid, amount, expires_at) VALUES (?, ?, ?, ?, ?)",
                [(tenant, f, rid, amount, expires) for f in ("*", *fields)],
            )
            return Hold(
                reservation_id=rid,
                tenant_id=tenant,
                amount_usd=from_micro(amount),
                key_id=scope.key_id,
                created_at=now,
                expires_at=expires,
            )

        return await self._run(op)

    async def settle(self, hold: Hold, actual_usd: float) -> float:
        actual = check_amount(actual_usd)
        tenant, rid = hold.tenant_id, hold.reservation_id
        key = escape(hold.key_id) if hold.key_id else None
        grace = max(hold.expires_at - hold.created_at, self._settings.closed_retention_s)

        def op(conn: sqlite3.Connection, now: float) -> tuple[int, str]:
            if conn.execute("SELECT 1 FROM closed WHERE tenant = ? AND rid = ?", (tenant, rid)).fetchone():
                return 0, "dup"
            row = conn.execute(
                "SELECT expires_at FROM holds WHERE tenant = ? AND field = '*' AND rid = ?", (tenant, rid)
            ).fetchone()
            status = "ok" if row is not None and row[0] > now else "late"
            conn.execute("DELETE FROM holds WHERE tenant = ? AND rid = ?", (tenant, rid))
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
            self._purge(conn, tenant, now)
            return actual, status

        charged, status = await self._run(op)
        if status == "dup":
            return 0.0
        log_overage(hold, charged, status)
        return from_micro(charged)

    async def release(self, hold: Hold) -> None:
        tenant, rid = hold.tenant_id, hold.reservation_id

        def op(conn: sqlite3.Connection, now: float) -> None:
            if conn.execute("SELECT 1 FROM closed WHERE tenant = ? AND rid = ?", (tenant, rid)).fetchone():
                return
            conn.execute("DELETE FROM holds WHERE tenant = ? AND rid = ?", (tenant, rid))
            # Remember the release so that a settle racing behind it cannot charge a cancelled call.
            conn.execute(
                "INSERT INTO closed(tenant, rid, until) VALUES (?, ?, ?)", (tenant, rid, self._closed_until(hold, now))
            )

        await self._run(op)

    async def usage(self, scope: BudgetScope) -> TenantUsage:
        tenant = scope.tenant_id
        key = escape(scope.key_id) if scope.key_id else None

        def op(conn: sqlite3.Connection, now: float) -> TenantUsage:
            buckets = all_buckets(now)
            policy = self._policy(conn, scope)

            def rows(spent_field: str, prefix: str, windows: Sequence[tuple[Any, int]]) -> list[WindowUsage]:
                out = []
                for w, limit in windows:
                    bid = buckets[w][0]
                    spent = self._spent(conn, tenant, bid, spent_field)
                    reserved = self._reserved(conn, tenant, prefix + bid, now)
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
            cutoff = now - RATE_WINDOW_S
            conn.execute("DELETE FROM ratelog WHERE tenant = ? AND ts <= ?", (tenant_id, cutoff))
            req, tok = conn.execute(
                "SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(tokens), 0) FROM ratelog WHERE tenant = ?",
                (tenant_id,),
            ).fetchone()
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
            conn.execute(
                "INSERT INTO ratelog(tenant, ts, id, requests, tokens) VALUES (?, ?, ?, 1, ?)",
                (tenant_id, now, uuid.uuid4().hex, est),
            )
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
            conn.execute(
                "INSERT INTO ratelog(tenant, ts, id, requests, tokens) VALUES (?, ?, ?, 0, ?)",
                (tenant_id, now, uuid.uuid4().hex, delta),
            )

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
