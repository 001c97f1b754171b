"""Redis stopped mid-run: fail-closed without overspend, durable spend, recovery in place; fail-open."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest

from gateway.ledger import (
    BudgetExceeded,
    BudgetScope,
    FailOpenLedger,
    LedgerSettings,
    LedgerUnavailable,
    RedisLedger,
    WindowLimit,
    make_ledger,
)
from testkit.redis_server import RedisServer

SCOPE = BudgetScope("acme", (WindowLimit("day", 1.0),))


@pytest.fixture
def durable_redis() -> Iterator[RedisServer]:
    with RedisServer(args=RedisServer.PERSISTENT_ARGS) as srv:
        yield srv


def settings_for(srv: RedisServer, **kw: object) -> LedgerSettings:
    return LedgerSettings(
        redis_url=srv.url,
        key_prefix=f"o{uuid.uuid4().hex[:8]}",
        redis_socket_timeout_s=5.0,
        redis_connect_timeout_s=5.0,
        **kw,  # type: ignore[arg-type]
    )


async def test_fail_closed_then_resume_after_restart(durable_redis: RedisServer) -> None:
    ledger = RedisLedger(settings_for(durable_redis))
    try:
        await ledger.settle(await ledger.reserve(SCOPE, 0.3), 0.3)
        in_flight = await ledger.reserve(SCOPE, 0.2)

        durable_redis.stop(kill=True)  # crash, not a clean shutdown: AOF fsync=always must hold
        with pytest.raises(LedgerUnavailable):
            await ledger.reserve(SCOPE, 0.1)
        with pytest.raises(LedgerUnavailable):
            await ledger.settle(in_flight, 0.2)
        with pytest.raises(LedgerUnavailable):
            await ledger.usage(SCOPE)
        with pytest.raises(LedgerUnavailable):
            await ledger.admit_request("acme", rpm=10, tpm=None, estimated_tokens=1)
        with pytest.raises(LedgerUnavailable):
            await ledger.set_limits("acme", [WindowLimit("day", 5.0)], None)
        with pytest.raises(LedgerUnavailable):
            await ledger.ping()

        durable_redis.start()  # same port, same dir
        await ledger.ping()  # the same object reconnects by itself
        usage = await ledger.usage(SCOPE)
        assert (usage.windows[0].spent_usd, usage.windows[0].reserved_usd, usage.requests) == (0.3, 0.2, 1)
        assert await ledger.settle(in_flight, 0.2) == 0.2
        # Fill the rest of the budget: nothing granted during the outage leaks through.
        await ledger.settle(await ledger.reserve(SCOPE, 0.5), 0.5)
        with pytest.raises(BudgetExceeded):
            await ledger.reserve(SCOPE, 0.000001)
        usage = await ledger.usage(SCOPE)
        assert (usage.windows[0].spent_usd, usage.windows[0].remaining_usd, usage.requests) == (1.0, 0.0, 3)
    finally:
        await ledger.close()


async def test_clean_restart_keeps_stored_limits(durable_redis: RedisServer) -> None:
    settings = settings_for(durable_redis)
    ledger = make_ledger(settings)
    try:
        await ledger.set_limits("acme", [WindowLimit("day", 0.25)], None)
        durable_redis.restart()
        with pytest.raises(BudgetExceeded) as err:
            await ledger.reserve(SCOPE, 0.3)
        assert err.value.limit_usd == 0.25
    finally:
        await ledger.close()


async def test_fail_open_admits_and_logs_loudly(
    durable_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = make_ledger(settings_for(durable_redis, fail_open=True))
    assert isinstance(ledger, FailOpenLedger)
    try:
        await ledger.settle(await ledger.reserve(SCOPE, 0.9), 0.9)
        with pytest.raises(BudgetExceeded):  # while the store answers, budgets still bind
            await ledger.reserve(SCOPE, 0.5)

        durable_redis.stop()
        with caplog.at_level(logging.ERROR, logger="gateway.ledger"):
            hold = await ledger.reserve(SCOPE, 0.5)
            await ledger.admit_request("acme", rpm=1, tpm=None, estimated_tokens=1)
        assert hold.enforced is False
        assert any(r.levelno == logging.ERROR and "FAIL-OPEN" in r.getMessage() for r in caplog.records)
        with pytest.raises(LedgerUnavailable):  # health checks still see the outage
            await ledger.ping()
        assert await ledger.remaining_usd(SCOPE) is None

        durable_redis.start()
        # Settling the unenforced hold once the store is back still records the spend.
        assert await ledger.settle(hold, 0.5) == 0.5
        usage = await ledger.usage(SCOPE)
        assert (usage.windows[0].spent_usd, usage.windows[0].remaining_usd) == (1.4, 0.0)
    finally:
        await ledger.close()


async def test_unreachable_at_startup_is_unavailable_not_a_crash() -> None:
    from testkit.redis_server import free_port

    ledger = RedisLedger(
        LedgerSettings(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_connect_timeout_s=1.0)
    )
    try:
        with pytest.raises(LedgerUnavailable):
            await ledger.reserve(SCOPE, 0.1)
    finally:
        await ledger.close()
