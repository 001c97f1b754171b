"""Backend selection and backend-specific guarantees not covered by the shared contract."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.ledger import (
    BudgetScope,
    FailOpenLedger,
    LedgerSettings,
    LedgerUnavailable,
    RedisLedger,
    SqliteLedger,
    WindowLimit,
    make_ledger,
)
from gateway.ledger.redis_ledger import is_cluster_url
from testkit.redis_server import RedisServer


async def test_make_ledger_selects_backend(tmp_path: Path, redis_server: RedisServer) -> None:
    sqlite_ledger = make_ledger(LedgerSettings(path=str(tmp_path / "l.db")))
    redis_ledger = make_ledger(LedgerSettings(redis_url=redis_server.url))
    wrapped = make_ledger(LedgerSettings(path=str(tmp_path / "l.db"), fail_open=True))
    try:
        assert isinstance(sqlite_ledger, SqliteLedger)
        assert isinstance(redis_ledger, RedisLedger)
        assert isinstance(wrapped, FailOpenLedger) and isinstance(wrapped.inner, SqliteLedger)
    finally:
        for ledger in (sqlite_ledger, redis_ledger, wrapped):
            await ledger.close()
    assert is_cluster_url("redis+cluster://h:1") and is_cluster_url("rediss+cluster://h:1")
    assert not is_cluster_url("redis://h:1")


def test_settings_reject_unknown_keys() -> None:
    with pytest.raises(ValidationError):
        LedgerSettings.model_validate({"redis_url": None, "fail_opne": True})
    with pytest.raises(ValueError):
        WindowLimit("fortnight", 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        BudgetScope("t", (WindowLimit("day", 1.0), WindowLimit("day", 2.0)))


async def test_sqlite_file_is_wal(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    ledger = SqliteLedger(LedgerSettings(path=str(path)))
    try:
        await ledger.reserve(BudgetScope("t", (WindowLimit("day", 1.0),)), 0.1)
    finally:
        await ledger.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_sqlite_unusable_path_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "not-a-file.db").mkdir()
    ledger = SqliteLedger(LedgerSettings(path=str(tmp_path / "not-a-file.db")))
    try:
        with pytest.raises(LedgerUnavailable):
            await ledger.ping()
        with pytest.raises(LedgerUnavailable):
            await ledger.reserve(BudgetScope("t", (WindowLimit("day", 1.0),)), 0.1)
    finally:
        await ledger.close()


async def test_sqlite_lock_held_elsewhere_is_unavailable(tmp_path: Path) -> None:
    """Another process holding the write lock past the busy timeout -> fail-closed, not a hang."""
    path = tmp_path / "ledger.db"
    settings = LedgerSettings(path=str(path), sqlite_busy_timeout_s=0.2)
    ledger = SqliteLedger(settings)
    try:
        await ledger.ping()  # creates the schema
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(LedgerUnavailable):
                await ledger.reserve(BudgetScope("t", (WindowLimit("day", 1.0),)), 0.1)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await ledger.reserve(BudgetScope("t", (WindowLimit("day", 1.0),)), 0.1)
    finally:
        await ledger.close()


def test_redis_server_helper_restart_keeps_port_and_data() -> None:
    with RedisServer(args=RedisServer.PERSISTENT_ARGS) as srv:
        port = srv.port
        assert srv.command("SET", "k", "v").startswith("+OK")
        srv.stop(kill=True)
        assert not srv.ping()
        srv.start()
        assert srv.port == port and "v" in srv.command("GET", "k")
    assert not srv.dir.exists()
