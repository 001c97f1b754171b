"""The durable settle path: what the store cannot take waits in the spool file and is replayed,
once, when the store answers again; on both backends, with their real stores really unavailable
(Redis killed and restarted on its AOF; SQLite's write lock held by another connection)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from gateway.ledger import (
    BudgetScope,
    Hold,
    LedgerSettings,
    Spool,
    SpooledLedger,
    SpoolRecord,
    WindowLimit,
    make_ledger,
    spool_path,
    store_id,
)
from testkit.redis_server import RedisServer

SCOPE = BudgetScope("acme", (WindowLimit("day", 1.0), WindowLimit("month", 5.0)), key_id="k1",
                    key_windows=(WindowLimit("day", 0.5),))


class Store:
    """One real store that a test can take down and bring back."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        spool = str(tmp_path / "spool" / "ledger.spool")
        self.redis: RedisServer | None = None
        self.blocker: sqlite3.Connection | None = None
        if kind == "redis":
            self.redis = RedisServer(args=RedisServer.PERSISTENT_ARGS).start()
            self.settings = LedgerSettings(redis_url=self.redis.url, key_prefix=f"sp{uuid.uuid4().hex[:8]}",
                                           spool_path=spool, spool_replay_interval_s=0.05)
        else:
            self.settings = LedgerSettings(path=str(tmp_path / "ledger.db"), sqlite_busy_timeout_s=0.2,
                                           spool_path=spool, spool_replay_interval_s=0.05)

    def ledger(self) -> SpooledLedger:
        ledger = make_ledger(self.settings, spool=True)
        assert isinstance(ledger, SpooledLedger)
        return ledger

    def down(self) -> None:
        if self.redis is not None:
            self.redis.stop(kill=True)
        else:
            self.blocker = sqlite3.connect(self.settings.path, isolation_level=None)
            self.blocker.execute("BEGIN IMMEDIATE")  # every writer now times out

    def up(self) -> None:
        if self.redis is not None:
            self.redis.start()  # same port, same AOF
        elif self.blocker is not None:
            self.blocker.execute("ROLLBACK")
            self.blocker.close()
            self.blocker = None

    def lose_holds(self, tenant: str) -> None:
        """What a crash that loses the last writes does to a reservation: it is simply gone."""
        if self.redis is not None:
            client = redis.Redis.from_url(self.redis.url)
            base = f"{self.settings.key_prefix}:{{{tenant}}}"
            client.delete(f"{base}:rsv", f"{base}:res", f"{base}:exp")
            client.close()
        else:
            with sqlite3.connect(self.settings.path) as conn:
                conn.execute("DELETE FROM holds WHERE tenant = ?", (tenant,))
                conn.execute("DELETE FROM reserved WHERE tenant = ?", (tenant,))

    def close(self) -> None:
        self.up()
        if self.redis is not None:
            self.redis.close()


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = Store(request.param, tmp_path)
    yield s
    s.close()


def charged(usage: Any) -> tuple[float, float, float, float, int]:
    """(tenant day, tenant month, key day) spend, tenant day reservations, settled requests."""
    day, month = usage.windows
    return day.spent_usd, month.spent_usd, usage.key_windows[0].spent_usd, day.reserved_usd, usage.requests


async def test_settle_while_down_is_spooled_and_replayed_once(store: Store) -> None:
    ledger = store.ledger()
    path = spool_path(store.settings)
    try:
        hold = await ledger.reserve(SCOPE, 0.4)
        store.down()
        assert await ledger.settle(hold, 0.3) == 0.3  # no error: it is on disk
        records, bad = ledger.spool.read()
        assert ([r.op for r in records], bad) == (["settle"], 0)
        kept = records[0].hold
        assert (kept.reservation_id, kept.tenant_id, kept.key_id, kept.amount_usd, kept.created_at, kept.expires_at) == (
            hold.reservation_id, "acme", "k1", 0.4, hold.created_at, hold.expires_at)
        assert records[0].actual_usd == 0.3
        saved = path.read_bytes()
        assert await ledger.replay() == 0  # still down: kept for later
        assert path.exists()

        store.up()
        assert await ledger.replay() == 1
        assert not path.exists()
        assert charged(await ledger.usage(SCOPE)) == (0.3, 0.3, 0.3, 0.0, 1)

        # Replay is idempotent on the hold id: the same record again charges nothing.
        path.write_bytes(saved)
        assert await ledger.replay() == 1
        assert charged(await ledger.usage(SCOPE)) == (0.3, 0.3, 0.3, 0.0, 1)
    finally:
        await ledger.close()


async def test_release_while_down_is_spooled(store: Store) -> None:
    ledger = store.ledger()
    try:
        hold = await ledger.reserve(SCOPE, 0.4)
        store.down()
        await ledger.release(hold)
        store.up()
        assert await ledger.replay() == 1
        assert charged(await ledger.usage(SCOPE)) == (0.0, 0.0, 0.0, 0.0, 0)
    finally:
        await ledger.close()


async def test_next_process_replays_what_a_dead_one_left(store: Store) -> None:
    first = store.ledger()
    hold = await first.reserve(SCOPE, 0.4)
    store.down()
    assert await first.settle(hold, 0.25) == 0.25
    await first.close()  # its last replay fails too: the record stays on disk
    assert spool_path(store.settings).exists()

    store.up()
    second = store.ledger()
    try:
        await second.start()  # replays at once, then every spool_replay_interval_s
        for _ in range(200):
            if not spool_path(store.settings).exists():
                break
            await asyncio.sleep(0.05)
        assert not spool_path(store.settings).exists()
        assert charged(await second.usage(SCOPE)) == (0.25, 0.25, 0.25, 0.0, 1)
    finally:
        await second.close()


async def test_a_hold_the_store_lost_is_charged_standalone(store: Store) -> None:
    ledger = store.ledger()
    try:
        hold = await ledger.reserve(SCOPE, 0.4)
        store.lose_holds("acme")  # e.g. the last second of an `everysec` AOF, lost in a crash
        store.down()
        await ledger.settle(hold, 0.3)
        store.up()
        assert await ledger.replay() == 1
        # Charged to the tenant's and the key's windows of the reservation, as a settle would.
        assert charged(await ledger.usage(SCOPE)) == (0.3, 0.3, 0.3, 0.0, 1)
        assert await ledger.settle(hold, 0.3) == 0.0
    finally:
        await ledger.close()


async def test_a_hold_that_expired_during_the_outage_is_corrected_to_actual(store: Store) -> None:
    ledger = store.ledger()
    try:
        hold = await ledger.reserve(SCOPE, 0.4, ttl_s=0.5)
        store.down()
        await ledger.settle(hold, 0.1)
        await asyncio.sleep(0.6)  # the outage outlasts the hold's TTL
        store.up()
        assert charged(await ledger.usage(SCOPE))[:2] == (0.4, 0.4)  # expired: worst case
        assert await ledger.replay() == 1
        assert charged(await ledger.usage(SCOPE)) == (0.1, 0.1, 0.1, 0.0, 1)  # corrected, once
    finally:
        await ledger.close()


async def test_records_of_another_store_are_left_alone(store: Store) -> None:
    ledger = store.ledger()
    foreign = SpoolRecord("settle", Hold("r-foreign", "acme", 0.4, created_at=1.0, expires_at=2.0), "another-store", 0.4)
    try:
        ledger.spool.append(foreign)
        assert await ledger.replay() == 0
        assert [r.id for r in ledger.spool.read()[0]] == [foreign.id]
        assert charged(await ledger.usage(SCOPE))[0] == 0.0
    finally:
        await ledger.close()


def test_spool_location_follows_the_store(tmp_path: Path) -> None:
    a = LedgerSettings(redis_url="redis://h:1/0", path=str(tmp_path / "x.db"))
    assert spool_path(a).parent == tmp_path
    assert spool_path(a) != spool_path(a.model_copy(update={"key_prefix": "other"}))
    assert spool_path(a) != spool_path(LedgerSettings(path=str(tmp_path / "x.db")))
    assert "secret" not in store_id(LedgerSettings(redis_url="redis://:secret@h:1/0"))
    assert spool_path(a.model_copy(update={"spool_path": str(tmp_path / "s")})) == tmp_path / "s"


def test_spool_file_survives_torn_lines_and_concurrent_writers(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.jsonl")

    def record(i: int) -> SpoolRecord:
        return SpoolRecord("release", Hold(f"r{i}", "acme", 0.1, created_at=1.0, expires_at=2.0), "st")

    spool.append(record(0))
    with open(spool.path, "ab") as f:
        f.write(b'{"v":1,"id":"torn","op":"se')  # a crash in the middle of an append
    spool.append(record(1))
    records, bad = spool.read()
    assert ([r.hold.reservation_id for r in records], bad) == (["r0", "r1"], 1)

    # Writers in several threads (each with its own open file, as separate processes would have)
    # while another thread compacts: every record written is either still there or removed on purpose.
    stop = threading.Event()

    def compact() -> None:
        while not stop.is_set():
            spool.remove({r.id for r in spool.read()[0] if int(r.hold.reservation_id[1:]) % 2 == 0})

    def write(offset: int) -> None:
        for i in range(offset, offset + 60):
            spool.append(record(i))

    compactor = threading.Thread(target=compact)
    compactor.start()
    writers = [threading.Thread(target=write, args=(k * 1000 + 2,)) for k in range(3)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    stop.set()
    compactor.join()
    left = {r.hold.reservation_id for r in spool.read()[0]}
    written = {f"r{i}" for k in range(3) for i in range(k * 1000 + 2, k * 1000 + 62)} | {"r1"}
    assert {r for r in written if int(r[1:]) % 2} <= left  # odd ids are never removed: none lost
    assert left <= written | {"r0"}
