"""The SQLite ledger's tables and the statements its operations share, each run inside the
caller's transaction."""

from __future__ import annotations

import sqlite3
import uuid

from .base import BudgetScope
from .policy import Policy, decode_policy, policy_from
from .windows import all_buckets, window_length_s

RATE_WINDOW_S = 60.0

SCHEMA = """
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
-- on_expiry: 'charge' | 'refund' (the reserving process's ledger.expired_holds; NULL in rows
-- written before it existed: refund); key: the escaped API key id or NULL; forget_at: until when
-- an expiry charge stays correctable (see `expired`).
CREATE TABLE IF NOT EXISTS holds(
  tenant TEXT NOT NULL, rid TEXT NOT NULL, amount INTEGER NOT NULL,
  fields TEXT NOT NULL, expires_at REAL NOT NULL,
  created_at REAL, key TEXT, on_expiry TEXT, forget_at REAL,
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
-- Holds that expired unsettled and were charged their amount, kept until `until` so that a late
-- settle corrects the charge to the actual cost, or a late release refunds it.
CREATE TABLE IF NOT EXISTS expired(
  tenant TEXT NOT NULL, rid TEXT NOT NULL, amount INTEGER NOT NULL, key TEXT,
  created_at REAL NOT NULL, grace REAL NOT NULL, until REAL NOT NULL,
  PRIMARY KEY(tenant, rid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS expired_by_until ON expired(tenant, until);
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


HOLD_COLUMNS = (("created_at", "REAL"), ("key", "TEXT"), ("on_expiry", "TEXT"), ("forget_at", "REAL"))


def migrate(conn: sqlite3.Connection) -> None:
    """Files made before holds carried what their expiry costs get the columns (NULL: refunded)."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(holds)")}
    for name, kind in HOLD_COLUMNS:
        if name not in have:
            try:
                conn.execute(f"ALTER TABLE holds ADD COLUMN {name} {kind}")
            except sqlite3.OperationalError as error:  # another process added it first
                if "duplicate column" not in str(error):
                    raise


def vacuum_expired(conn: sqlite3.Connection, now: float) -> None:
    # Housekeeping across all tenants, amortised over many operations.
    conn.execute("DELETE FROM spent WHERE expires_at IS NOT NULL AND expires_at < ?", (now,))
    for (tenant,) in conn.execute("SELECT DISTINCT tenant FROM holds WHERE expires_at <= ?", (now,)).fetchall():
        purge(conn, tenant, now)
    conn.execute("DELETE FROM closed WHERE until < ?", (now,))
    conn.execute("DELETE FROM expired WHERE until < ?", (now,))
    stale = conn.execute("SELECT DISTINCT tenant FROM ratelog WHERE ts <= ?", (now - RATE_WINDOW_S,)).fetchall()
    for (tenant,) in stale:
        slide(conn, tenant, now)

def slide(conn: sqlite3.Connection, tenant: str, now: float) -> tuple[int, int]:
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

def log_rate(conn: sqlite3.Connection, tenant: str, now: float, requests: int, tokens: int) -> None:
    conn.execute(
        "INSERT INTO ratelog(tenant, ts, id, requests, tokens) VALUES (?, ?, ?, ?, ?)",
        (tenant, now, uuid.uuid4().hex, requests, tokens),
    )
    conn.execute(
        "INSERT INTO ratesum(tenant, requests, tokens) VALUES (?, ?, ?) ON CONFLICT(tenant) DO UPDATE SET "
        "requests = requests + excluded.requests, tokens = tokens + excluded.tokens",
        (tenant, requests, tokens),
    )

def policy_of(conn: sqlite3.Connection, scope: BudgetScope) -> Policy:
    row = conn.execute("SELECT policy FROM limits WHERE tenant = ?", (scope.tenant_id,)).fetchone()
    if row is not None:
        return decode_policy(row[0])
    return policy_from(scope.windows, scope.max_cost_per_request_usd)

def spent(conn: sqlite3.Connection, tenant: str, bucket: str, field: str) -> int:
    row = conn.execute(
        "SELECT amount FROM spent WHERE tenant = ? AND bucket = ? AND field = ?", (tenant, bucket, field)
    ).fetchone()
    return 0 if row is None else int(row[0])

def reserved(conn: sqlite3.Connection, tenant: str, field: str) -> int:
    row = conn.execute("SELECT amount FROM reserved WHERE tenant = ? AND field = ?", (tenant, field)).fetchone()
    return 0 if row is None else int(row[0])

def drop_hold(conn: sqlite3.Connection, tenant: str, rid: str, amount: int, fields: str) -> None:
    """Delete a hold and take its amount out of every field it reserved in."""
    conn.execute("DELETE FROM holds WHERE tenant = ? AND rid = ?", (tenant, rid))
    for field in filter(None, fields.split("|")):
        conn.execute(
            "UPDATE reserved SET amount = amount - ? WHERE tenant = ? AND field = ?", (amount, tenant, field)
        )
    conn.execute("DELETE FROM reserved WHERE tenant = ? AND amount <= 0", (tenant,))

def purge(conn: sqlite3.Connection, tenant: str, now: float) -> None:
    """Expired holds stop counting. With on_expiry 'charge' each is charged its amount (its gateway
    crashed or lost the ledger mid-call, and the upstream may have billed the call) and kept in
    `expired` for a late settle to correct; with 'refund' the money returns to the window."""
    for rid, amount, fields, expires_at, created_at, key, on_expiry, forget_at in conn.execute(
        "SELECT rid, amount, fields, expires_at, created_at, key, on_expiry, forget_at FROM holds "
        "WHERE tenant = ? AND expires_at <= ?",
        (tenant, now),
    ).fetchall():
        drop_hold(conn, tenant, rid, amount, fields)
        if on_expiry == "charge" and created_at is not None:
            grace = max(expires_at - created_at, forget_at - expires_at)
            add_spend(conn, tenant, key, created_at, grace, amount, 1)
            conn.execute(
                "INSERT OR REPLACE INTO expired(tenant, rid, amount, key, created_at, grace, until) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (tenant, rid, amount, key, created_at, grace, forget_at),
            )
    conn.execute("DELETE FROM closed WHERE tenant = ? AND until < ?", (tenant, now))
    conn.execute("DELETE FROM expired WHERE tenant = ? AND until < ?", (tenant, now))


SPEND = (
    "INSERT INTO spent(tenant, bucket, field, amount, expires_at) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT(tenant, bucket, field) DO UPDATE SET amount = amount + excluded.amount, "
    "expires_at = excluded.expires_at"
)


def add_spend(
    conn: sqlite3.Connection, tenant: str, key: str | None, created_at: float, grace: float, amount: int, count: int
) -> None:
    """Add `amount` (negative: a correction) to the tenant's and key's spend in the buckets of
    `created_at`, and `count` to that day's request count."""
    rows = []
    for w, (bid, end) in all_buckets(created_at).items():
        exp = None if end is None else end + window_length_s(w) + grace
        rows.append((tenant, bid, "t", amount, exp))
        if key is not None:
            rows.append((tenant, bid, f"k:{key}", amount, exp))
        if w == "day" and count:
            rows.append((tenant, bid, "n", count, exp))
    conn.executemany(SPEND, rows)


def is_closed(conn: sqlite3.Connection, tenant: str, rid: str) -> bool:
    return conn.execute("SELECT 1 FROM closed WHERE tenant = ? AND rid = ?", (tenant, rid)).fetchone() is not None


def close(conn: sqlite3.Connection, tenant: str, rid: str, until: float) -> None:
    conn.execute("INSERT INTO closed(tenant, rid, until) VALUES (?, ?, ?)", (tenant, rid, until))


def settle(
    conn: sqlite3.Connection, tenant: str, rid: str, key: str | None, created_at: float, grace: float, actual: int,
    closed_until: float,
) -> tuple[int, str]:
    """Status 'ok', 'corrected' (an expiry charge set to the actual cost), 'late' (unknown hold:
    a standalone charge) or 'dup' (already settled or released: nothing charged)."""
    if is_closed(conn, tenant, rid):
        return 0, "dup"
    status, delta, count = "late", actual, 1
    row = conn.execute("SELECT amount, fields FROM holds WHERE tenant = ? AND rid = ?", (tenant, rid)).fetchone()
    if row is not None:
        drop_hold(conn, tenant, rid, row[0], row[1])
        status = "ok"
    else:
        charged = conn.execute("SELECT amount FROM expired WHERE tenant = ? AND rid = ?", (tenant, rid)).fetchone()
        if charged is not None:
            conn.execute("DELETE FROM expired WHERE tenant = ? AND rid = ?", (tenant, rid))
            status, delta, count = "corrected", actual - int(charged[0]), 0
    add_spend(conn, tenant, key, created_at, grace, delta, count)
    close(conn, tenant, rid, closed_until)
    return actual, status


def release(conn: sqlite3.Connection, tenant: str, rid: str, closed_until: float) -> None:
    if is_closed(conn, tenant, rid):
        return
    row = conn.execute("SELECT amount, fields FROM holds WHERE tenant = ? AND rid = ?", (tenant, rid)).fetchone()
    if row is not None:
        drop_hold(conn, tenant, rid, row[0], row[1])
    else:
        charged = conn.execute(
            "SELECT amount, key, created_at, grace FROM expired WHERE tenant = ? AND rid = ?", (tenant, rid)
        ).fetchone()
        if charged is not None:  # expired and charged, but its gateway says the call was not made
            conn.execute("DELETE FROM expired WHERE tenant = ? AND rid = ?", (tenant, rid))
            amount, key, created_at, grace = charged
            add_spend(conn, tenant, key, created_at, grace, -int(amount), -1)
    # Remembered so that a settle racing behind it cannot charge a cancelled call, and a reserve
    # with this id arriving late cannot take effect.
    close(conn, tenant, rid, closed_until)


def known(conn: sqlite3.Connection, tenant: str, rid: str) -> str | None:
    """'live' if the id holds a reservation, 'closed' if it was settled, released or expired."""
    if conn.execute("SELECT 1 FROM holds WHERE tenant = ? AND rid = ?", (tenant, rid)).fetchone():
        return "live"
    if is_closed(conn, tenant, rid) or conn.execute(
        "SELECT 1 FROM expired WHERE tenant = ? AND rid = ?", (tenant, rid)
    ).fetchone():
        return "closed"
    return None
