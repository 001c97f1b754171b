"""Fixtures for the ledger tests: real redis-server processes and ledger factories per backend."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from gateway.ledger import Ledger, LedgerSettings, RedisLedger, SqliteLedger
from testkit.redis_server import RedisClusterServer, RedisServer

# Fake clocks start in the future: Redis key expiries (PEXPIREAT) are computed from the ledger's
# clock but enforced by the server's real clock, so a fake time in the past would expire keys
# immediately. 2027-01-13 is a Wednesday.
BASE_TIME = datetime(2027, 1, 13, 12, 0, 0, tzinfo=timezone.utc).timestamp()


class FakeClock:
    def __init__(self, now: float = BASE_TIME) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def set(self, when: datetime) -> None:
        self.now = when.timestamp()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One throwaway redis-server for the session (tests isolate themselves by key prefix)."""
    with RedisServer() as srv:
        yield srv


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServer]:
    with RedisClusterServer(masters=3) as cluster:
        yield cluster


LedgerFactory = Callable[..., Awaitable[Ledger]]


@pytest.fixture(params=["sqlite", "redis", "redis-cluster"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_settings(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> LedgerSettings:
    """Settings naming one store private to this test; every ledger built from them shares it."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    # Generous timeouts: the CI box is shared and slow; these tests are about semantics.
    if backend == "sqlite":
        return LedgerSettings(path=str(tmp_path / "ledger.db"), key_prefix=prefix)
    if backend == "redis":
        srv: RedisServer = request.getfixturevalue("redis_server")
        return LedgerSettings(
            redis_url=srv.url, key_prefix=prefix, redis_socket_timeout_s=15.0, redis_connect_timeout_s=15.0
        )
    cluster: RedisClusterServer = request.getfixturevalue("redis_cluster")
    return LedgerSettings(
        redis_url=cluster.url, key_prefix=prefix, redis_socket_timeout_s=15.0, redis_connect_timeout_s=15.0
    )


@pytest.fixture
async def make_ledger(store_settings: LedgerSettings) -> AsyncIterator[LedgerFactory]:
    """``await make_ledger(clock=..., **setting_overrides)``: a new ledger instance on this
    test's store (as a second replica would be); all are closed at teardown."""
    made: list[Ledger] = []

    async def factory(clock: Callable[[], float] | None = None, **overrides: Any) -> Ledger:
        settings = store_settings.model_copy(update=overrides)
        kwargs: dict[str, Any] = {} if clock is None else {"clock": clock}
        ledger: Ledger = (
            RedisLedger(settings, **kwargs) if settings.redis_url else SqliteLedger(settings, **kwargs)
        )
        made.append(ledger)
        return ledger

    yield factory
    for ledger in made:
        await ledger.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
