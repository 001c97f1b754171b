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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from .amounts import WindowLimit, from_micro
from .base import (
    BudgetExceeded,
    BudgetScope,
    Hold,
    Ledger,
    LedgerUnavailable,
    RateLimitExceeded,
    TenantUsage,
    WindowUsage,
    check_amount,
    check_ttl,
    log_overage,
    new_reservation_id,
    window_usage,
)
from .policy import Policy, decode_policy, encode_policy, escape, policy_from
from . import sqlite_queries as queries
from .settings import LedgerSettings
from .windows import all_buckets

log = logging.getLogger("gateway.ledger")

Clock = Callable[[], float]
T = TypeVar("T")

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
                conn.executescript(queries.SCHEMA)
                queries.migrate(conn)
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
                queries.vacuum_expired(conn, now)
            conn.execute("COMMIT")
            return out
        except BaseException:
            if conn.in_transaction:  # a failed COMMIT may already have ended it
                conn.execute("ROLLBACK")
            raise

    async def _run(self, fn: Callable[[sqlite3.Connection, float], T]) -> T:
        if self._closed:
            raise LedgerUnavailable("budget ledger is closed", maybe_applied=False)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._tx, fn)
        except sqlite3.DatabaseError as e:
            # "database is locked" after the busy timeout, disk full, unreadable file... The
            # transaction was rolled back, so nothing of it took effect.
            raise LedgerUnavailable(f"budget ledger (SQLite {self._path}) unavailable: {e}", maybe_applied=False) from e

    def _closed_until(self, hold: Hold, now: float) -> float:
        return max(now, hold.expires_at) + self._settings.closed_retention_s

    # -- budgets ----------------------------------------------------------------------------

    async def reserve(
        self, scope: BudgetScope, amount_usd: float, *, ttl_s: float | None = None, reservation_id: str | None = None
    ) -> Hold:
        amount = check_amount(amount_usd, round_up=True)
        ttl = check_ttl(self._settings.reservation_ttl_s if ttl_s is None else ttl_s)
        rid = reservation_id or new_reservation_id()
        tenant = scope.tenant_id
        key_windows = policy_from(scope.key_windows, None).windows
        key = escape(scope.key_id) if scope.key_id else None
        on_expiry = self._settings.expired_holds

        def op(conn: sqlite3.Connection, now: float) -> Hold:
            queries.purge(conn, tenant, now)
            seen = queries.known(conn, tenant, rid)
            if seen == "closed":  # cancelled (released) before this reserve ran: it must not take effect
                raise LedgerUnavailable("budget ledger (SQLite): the reservation was cancelled", maybe_applied=False)
            if seen == "live":  # a retry of a reserve that did run
                return Hold(reservation_id=rid, tenant_id=tenant, amount_usd=from_micro(amount), key_id=scope.key_id,
                            created_at=now, expires_at=now + ttl)
            policy = queries.policy_of(conn, scope)
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
                    spent = queries.spent(conn, tenant, bid, spent_field)
                    reserved = queries.reserved(conn, tenant, field)
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
                "INSERT INTO holds(tenant, rid, amount, fields, expires_at, created_at, key, on_expiry, forget_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (tenant, rid, amount, "|".join(fields), expires, now, key, on_expiry,
                 expires + self._settings.closed_retention_s),
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
            queries.purge(conn, tenant, now)
            # Charged to the buckets current at reservation time (see Ledger docstring).
            return queries.settle(conn, tenant, rid, key, hold.created_at, grace, actual, self._closed_until(hold, now))

        charged, status = await self._run(op)
        if status == "dup":
            return 0.0
        log_overage(hold, charged, status)
        return from_micro(charged)

    async def release(self, hold: Hold) -> None:
        tenant, rid = hold.tenant_id, hold.reservation_id

        def op(conn: sqlite3.Connection, now: float) -> None:
            queries.purge(conn, tenant, now)
            queries.release(conn, tenant, rid, self._closed_until(hold, now))

        await self._run(op)

    async def usage(self, scope: BudgetScope) -> TenantUsage:
        tenant = scope.tenant_id
        key = escape(scope.key_id) if scope.key_id else None

        def op(conn: sqlite3.Connection, now: float) -> TenantUsage:
            queries.purge(conn, tenant, now)
            buckets = all_buckets(now)
            policy = queries.policy_of(conn, scope)

            def rows(spent_field: str, prefix: str, windows: Sequence[tuple[Any, int]]) -> list[WindowUsage]:
                out = []
                for w, limit in windows:
                    bid = buckets[w][0]
                    spent = queries.spent(conn, tenant, bid, spent_field)
                    reserved = queries.reserved(conn, tenant, prefix + bid)
                    out.append(window_usage(w, limit, spent, reserved))
                return out

            return TenantUsage(
                tenant=tenant,
                windows=rows("t", "t:", policy.windows),
                requests=queries.spent(conn, tenant, buckets["day"][0], "n"),
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
            req, tok = queries.slide(conn, tenant_id, now)
            tok = max(0, tok)
            if rpm is not None and req + 1 > rpm:
                need, seen = req + 1 - rpm, 0
                for ts, n in conn.execute(
                    "SELECT ts, requests FROM ratelog WHERE tenant = ? ORDER BY ts", (tenant_id,)
                ):
                    seen += n
                    if seen >= need:
                        return "rpm", ts + queries.RATE_WINDOW_S - now
                return "rpm", queries.RATE_WINDOW_S
            if tpm is not None:
                if est > tpm:
                    return "tpm", queries.RATE_WINDOW_S
                if tok + est > tpm:
                    freed = 0
                    for ts, n in conn.execute(
                        "SELECT ts, tokens FROM ratelog WHERE tenant = ? ORDER BY ts", (tenant_id,)
                    ):
                        freed += n
                        if tok - freed + est <= tpm:
                            return "tpm", ts + queries.RATE_WINDOW_S - now
                    return "tpm", queries.RATE_WINDOW_S
            queries.log_rate(conn, tenant_id, now, 1, est)
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
            queries.slide(conn, tenant_id, now)
            queries.log_rate(conn, tenant_id, now, 0, delta)

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
