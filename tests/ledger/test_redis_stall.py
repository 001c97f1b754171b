"""A frozen Redis (SIGSTOP) resumes and runs the commands queued while it was stopped: a reserve
the gateway already gave up on must not become a hold nobody settles."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.ledger import BudgetScope, LedgerSettings, LedgerUnavailable, RedisLedger, SpooledLedger, WindowLimit, make_ledger
from testkit.redis_server import RedisServer

SCOPE = BudgetScope("acme", (WindowLimit("day", 1.0),))


@pytest.fixture
def redis_srv() -> Iterator[RedisServer]:
    with RedisServer() as srv:
        yield srv


def settings(srv: RedisServer, tmp_path: Path) -> LedgerSettings:
    return LedgerSettings(redis_url=srv.url, key_prefix=f"st{uuid.uuid4().hex[:8]}", redis_socket_timeout_s=0.5,
                          redis_connect_timeout_s=0.5, spool_path=str(tmp_path / "spool"))


async def reserve_while_frozen(srv: RedisServer, ledger: RedisLedger | SpooledLedger) -> LedgerUnavailable:
    assert srv.proc is not None
    os.kill(srv.proc.pid, signal.SIGSTOP)
    try:
        with pytest.raises(LedgerUnavailable) as err:
            await ledger.reserve(SCOPE, 0.4)
    finally:
        os.kill(srv.proc.pid, signal.SIGCONT)
    return err.value


async def answered(ledger: RedisLedger | SpooledLedger) -> float:
    """Reserved money once Redis answers again (it first runs what was queued while frozen)."""
    for _ in range(50):
        try:
            return (await ledger.usage(SCOPE)).windows[0].reserved_usd
        except LedgerUnavailable:
            await asyncio.sleep(0.1)
    raise AssertionError("Redis did not answer after SIGCONT")


async def test_reserve_reaching_redis_after_its_deadline_is_refused(redis_srv: RedisServer, tmp_path: Path) -> None:
    ledger = RedisLedger(settings(redis_srv, tmp_path))
    try:
        await ledger.settle(await ledger.reserve(SCOPE, 0.1), 0.1)  # connected and warm
        error = await reserve_while_frozen(redis_srv, ledger)
        assert error.maybe_applied  # it was sent: from here, the ledger cannot know
        assert await answered(ledger) == 0.0  # ...but Redis refused it as late: no phantom hold
        await ledger.reserve(SCOPE, 0.9)  # the whole rest of the window is available
    finally:
        await ledger.close()


async def test_unknown_reserve_is_cancelled_through_the_spool(redis_srv: RedisServer, tmp_path: Path) -> None:
    ledger = make_ledger(settings(redis_srv, tmp_path), spool=True)
    assert isinstance(ledger, SpooledLedger)
    try:
        await ledger.settle(await ledger.reserve(SCOPE, 0.1), 0.1)
        await reserve_while_frozen(redis_srv, ledger)
        (cancel,), _ = ledger.spool.read()  # its id, spooled as a release
        assert cancel.op == "release"
        await answered(ledger)
        assert await ledger.replay() == 1
        # The id is closed now: a copy of that reserve still on its way could never take effect.
        with pytest.raises(LedgerUnavailable):
            await ledger.reserve(SCOPE, 0.4, reservation_id=cancel.hold.reservation_id)
        assert await answered(ledger) == 0.0
    finally:
        await ledger.close()


async def test_a_redis_clock_ahead_of_ours_is_learned_not_fatal(
    redis_srv: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # This replica's clock 5 s behind Redis's: every deadline it computes has passed by Redis's
    # clock. The first refusal shows the skew; the reserve is retried with it allowed for.
    ledger = RedisLedger(settings(redis_srv, tmp_path), wall_clock=lambda: time.time() - 5.0)
    try:
        with caplog.at_level(logging.WARNING, logger="gateway.ledger"):
            hold = await ledger.reserve(SCOPE, 0.4)
        assert any("ahead" in r.getMessage() for r in caplog.records)
        assert await ledger.settle(hold, 0.4) == 0.4
        await ledger.reserve(SCOPE, 0.1)
    finally:
        await ledger.close()
