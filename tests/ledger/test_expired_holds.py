"""What an expired hold costs, and how a late settle or release corrects it: the same contract on
SQLite, Redis and Redis Cluster (see conftest). Also cancelling a reserve by its id."""

from __future__ import annotations

import logging
import sqlite3
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import redis

from gateway.ledger import (
    BudgetExceeded,
    BudgetScope,
    Hold,
    LedgerSettings,
    LedgerUnavailable,
    RedisLedger,
    SqliteLedger,
    WindowLimit,
)
from testkit.redis_server import RedisServer

from .conftest import FakeClock, LedgerFactory

KEYED = BudgetScope("acme", (WindowLimit("day", 1.0), WindowLimit("month", 5.0)), key_id="k1",
                    key_windows=(WindowLimit("day", 0.5),))


def spent(usage: object) -> dict[str, float]:
    out = {w.window: w.spent_usd for w in usage.windows}  # type: ignore[attr-defined]
    out.update({f"key-{w.window}": w.spent_usd for w in usage.key_windows})  # type: ignore[attr-defined]
    return out


async def test_expired_hold_is_charged_its_worst_case(make_ledger: LedgerFactory, clock: FakeClock) -> None:
    ledger = await make_ledger(clock=clock)
    await ledger.reserve(KEYED, 0.4, ttl_s=10)
    clock.advance(11)  # its gateway died mid-call: the upstream may have billed it
    usage = await ledger.usage(KEYED)
    assert spent(usage) == {"day": 0.4, "month": 0.4, "key-day": 0.4}
    assert [w.reserved_usd for w in (*usage.windows, *usage.key_windows)] == [0.0, 0.0, 0.0]
    assert usage.requests == 1
    # The charge was inside the limit when reserved, so the limit still holds.
    await ledger.reserve(KEYED, 0.1)
    with pytest.raises(BudgetExceeded):
        await ledger.reserve(KEYED, 0.000001)


async def test_late_settle_corrects_the_expiry_charge_once(
    make_ledger: LedgerFactory, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    ledger, replica = await make_ledger(clock=clock), await make_ledger(clock=clock)
    hold = await ledger.reserve(KEYED, 0.4, ttl_s=10)
    clock.advance(11)
    assert spent(await ledger.usage(KEYED))["day"] == 0.4  # charged at expiry
    with caplog.at_level(logging.WARNING, logger="gateway.ledger"):
        assert await ledger.settle(hold, 0.1) == 0.1
    assert any("corrected" in r.getMessage() for r in caplog.records)
    usage = await ledger.usage(KEYED)
    assert spent(usage) == {"day": 0.1, "month": 0.1, "key-day": 0.1}
    assert usage.requests == 1  # one request, counted once
    assert await ledger.settle(hold, 0.1) == 0.0
    assert await replica.settle(hold, 0.3) == 0.0
    await replica.release(hold)
    usage = await ledger.usage(KEYED)
    assert (spent(usage)["day"], usage.requests) == (0.1, 1)


async def test_settle_that_finds_its_hold_expired_pays_actual(make_ledger: LedgerFactory, clock: FakeClock) -> None:
    # No other call purged the hold first: the settle's own purge charges it, then corrects it.
    ledger = await make_ledger(clock=clock)
    under, over = await ledger.reserve(KEYED, 0.2, ttl_s=10), await ledger.reserve(KEYED, 0.2, ttl_s=10)
    clock.advance(11)
    assert await ledger.settle(under, 0.05) == 0.05
    assert await ledger.settle(over, 0.25) == 0.25  # more than reserved: charged in full, as ever
    usage = await ledger.usage(KEYED)
    assert (spent(usage)["day"], spent(usage)["key-day"], usage.requests) == (0.3, 0.3, 2)


async def test_late_release_refunds_the_expiry_charge(make_ledger: LedgerFactory, clock: FakeClock) -> None:
    ledger = await make_ledger(clock=clock)
    hold = await ledger.reserve(KEYED, 0.4, ttl_s=10)
    clock.advance(11)
    assert spent(await ledger.usage(KEYED))["day"] == 0.4
    await ledger.release(hold)  # its gateway knows the call was never made
    usage = await ledger.usage(KEYED)
    assert (spent(usage), usage.requests) == ({"day": 0.0, "month": 0.0, "key-day": 0.0}, 0)
    assert await ledger.settle(hold, 0.4) == 0.0
    await ledger.release(hold)
    assert spent(await ledger.usage(KEYED))["day"] == 0.0


async def test_refund_mode_returns_the_money(make_ledger: LedgerFactory, clock: FakeClock) -> None:
    ledger = await make_ledger(clock=clock, expired_holds="refund")
    hold = await ledger.reserve(KEYED, 0.4, ttl_s=10)
    clock.advance(11)
    usage = await ledger.usage(KEYED)
    assert (spent(usage)["day"], usage.windows[0].reserved_usd, usage.requests) == (0.0, 0.0, 0)
    assert await ledger.settle(hold, 0.1) == 0.1  # a late settle is still charged, once
    assert await ledger.settle(hold, 0.1) == 0.0
    usage = await ledger.usage(KEYED)
    assert (spent(usage), usage.requests) == ({"day": 0.1, "month": 0.1, "key-day": 0.1}, 1)


async def test_each_hold_expires_the_way_its_replica_was_configured(make_ledger: LedgerFactory, clock: FakeClock) -> None:
    charging, refunding = await make_ledger(clock=clock), await make_ledger(clock=clock, expired_holds="refund")
    s = BudgetScope("acme", (WindowLimit("day", 1.0),))
    await charging.reserve(s, 0.3, ttl_s=10)
    await refunding.reserve(s, 0.2, ttl_s=10)
    clock.advance(11)
    assert (await refunding.usage(s)).windows[0].spent_usd == 0.3


async def test_expiry_charge_lands_in_the_buckets_of_the_reservation(make_ledger: LedgerFactory, clock: FakeClock) -> None:
    ledger = await make_ledger(clock=clock)
    s = BudgetScope("acme", (WindowLimit("day", 1.0), WindowLimit("month", 5.0)))
    clock.set(datetime(2027, 1, 13, 23, 59, 50, tzinfo=timezone.utc))
    hold = await ledger.reserve(s, 0.4, ttl_s=30)
    clock.advance(40)  # expired on the next day, same month
    assert spent(await ledger.usage(s)) == {"day": 0.0, "month": 0.4}
    assert await ledger.settle(hold, 0.1) == 0.1
    assert spent(await ledger.usage(s)) == {"day": 0.0, "month": 0.1}


async def test_expiry_charge_is_correctable_for_the_retention_period(make_ledger: LedgerFactory, clock: FakeClock) -> None:
    ledger = await make_ledger(clock=clock, closed_retention_s=60)
    s = BudgetScope("acme", (WindowLimit("day", 1.0),))
    hold = await ledger.reserve(s, 0.4, ttl_s=10)
    clock.advance(11 + 61)
    assert (await ledger.usage(s)).windows[0].spent_usd == 0.4
    # Past the retention the store has forgotten the hold: a settle that late is charged again
    # (over-, never under-charging); ledger.closed_retention_s must outlast any outage.
    assert await ledger.settle(hold, 0.1) == 0.1
    assert (await ledger.usage(s)).windows[0].spent_usd == 0.5


async def test_release_before_reserve_cancels_it(make_ledger: LedgerFactory) -> None:
    ledger = await make_ledger()
    s = BudgetScope("acme", (WindowLimit("day", 1.0),))
    # A reserve whose reply never came back is cancelled by its id; a release that reaches the
    # store first keeps the reserve from ever taking effect.
    await ledger.release(Hold(reservation_id="r-cancelled", tenant_id="acme", amount_usd=0.4))
    with pytest.raises(LedgerUnavailable) as err:
        await ledger.reserve(s, 0.4, reservation_id="r-cancelled")
    assert err.value.maybe_applied is False
    assert (await ledger.usage(s)).windows[0].reserved_usd == 0.0
    # A reserve retried with the same id (its first reply lost) reserves once.
    await ledger.reserve(s, 0.4, reservation_id="r-retried")
    await ledger.reserve(s, 0.4, reservation_id="r-retried")
    assert (await ledger.usage(s)).windows[0].reserved_usd == 0.4


async def test_sqlite_file_from_before_expiry_charges_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # the holds table as earlier versions created it
        conn.execute("CREATE TABLE holds(tenant TEXT NOT NULL, rid TEXT NOT NULL, amount INTEGER NOT NULL, "
                     "fields TEXT NOT NULL, expires_at REAL NOT NULL, PRIMARY KEY(tenant, rid)) WITHOUT ROWID")
        conn.execute("INSERT INTO holds VALUES ('acme', 'old', 400000, 't:day:20270113', 0)")
    clock = FakeClock()
    ledger = SqliteLedger(LedgerSettings(path=str(path)), clock=clock)
    try:
        s = BudgetScope("acme", (WindowLimit("day", 1.0),))
        hold = await ledger.reserve(s, 0.3, ttl_s=10)
        clock.advance(11)
        # The old row carries no charge and is refunded; the new one is charged.
        assert (await ledger.usage(s)).windows[0].spent_usd == 0.3
        assert await ledger.settle(hold, 0.2) == 0.2
        assert (await ledger.usage(s)).windows[0].spent_usd == 0.2
    finally:
        await ledger.close()


async def test_redis_hold_written_by_an_earlier_version_is_refunded(redis_server: RedisServer) -> None:
    clock = FakeClock()
    settings = LedgerSettings(redis_url=redis_server.url, key_prefix=f"legacy{uuid.uuid4().hex[:8]}")
    ledger = RedisLedger(settings, clock=clock)
    base = f"{settings.key_prefix}:{{acme}}"
    raw = redis.Redis.from_url(redis_server.url)
    try:  # the record format before holds carried what their expiry costs
        raw.hset(f"{base}:res", "old", "400000|t:day:20270113")
        raw.hincrby(f"{base}:rsv", "t:day:20270113", 400000)
        raw.zadd(f"{base}:exp", {"old": int((clock.now + 10) * 1000)})
        s = BudgetScope("acme", (WindowLimit("day", 1.0),))
        assert (await ledger.usage(s)).windows[0].reserved_usd == 0.4
        clock.advance(11)
        u = await ledger.usage(s)
        assert (u.windows[0].reserved_usd, u.windows[0].spent_usd) == (0.0, 0.0)
        old = Hold("old", "acme", 0.4, created_at=clock.now - 11, expires_at=clock.now - 1)
        assert await ledger.settle(old, 0.1) == 0.1  # charged late, as before
        assert (await ledger.usage(s)).windows[0].spent_usd == 0.1
    finally:
        raw.close()
        await ledger.close()
