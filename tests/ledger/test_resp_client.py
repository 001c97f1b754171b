"""The lean pipelined RESP client behind the ledger's hot scripts, against real redis-server processes."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.ledger import LedgerSettings, LedgerUnavailable, RedisLedger
from gateway.ledger import BudgetScope, WindowLimit
from gateway.ledger.redis_ledger import _Script
from gateway.ledger.resp import LeanRedis, supports
from testkit.redis_server import RedisServer

ECHO = "return {ARGV[1], tonumber(ARGV[2]) * 2}"
# Busy-waits ARGV[1] milliseconds inside Redis (DEBUG SLEEP is not allowed in scripts).
SPIN = """
local function ms() local t = redis.call('TIME') return t[1] * 1000 + t[2] / 1000 end
local stop = ms() + tonumber(ARGV[1])
while ms() < stop do end
return 'slow'
"""


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as srv:
        yield srv


@pytest.fixture
async def client(server: RedisServer) -> AsyncIterator[LeanRedis]:
    lean = LeanRedis(server.url, socket_timeout_s=5.0, connect_timeout_s=5.0)
    yield lean
    await lean.aclose()


def test_only_plain_standalone_urls_take_the_lean_path() -> None:
    assert supports("redis://127.0.0.1:6379/0") and supports("unix:///run/redis.sock")
    assert not supports("rediss://host:6380/0")
    assert not supports("redis+cluster://host:7000")


async def test_concurrent_calls_pipeline_on_one_socket_and_each_gets_its_own_reply(client: LeanRedis, server: RedisServer) -> None:
    replies = await asyncio.gather(*(client.eval(ECHO, 0, f"caller-{i}", i) for i in range(300)))
    assert replies == [[f"caller-{i}", 2 * i] for i in range(300)]
    # One connection for all of them (plus the one `command` below opens).
    assert server.command("CLIENT", "LIST").count("cmd=") == 2


async def test_a_cancelled_caller_does_not_shift_the_replies_of_the_next(client: LeanRedis) -> None:
    slow = asyncio.ensure_future(client.eval(SPIN, 0, 200))
    await asyncio.sleep(0.05)
    connection = client._protocol
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    assert await client.eval(ECHO, 0, "next", 1) == ["next", 2]
    assert client._protocol is connection and connection is not None and connection.lost is None  # not by reconnecting


async def test_evalsha_of_an_unknown_script_is_noscript_and_the_ledger_falls_back_to_eval(client: LeanRedis, server: RedisServer) -> None:
    script = _Script("return 'loaded'")
    with pytest.raises(NoScriptError):
        await client.evalsha(script.sha, 0)
    assert await script(client, [], []) == "loaded"
    assert await client.evalsha(script.sha, 0) == "loaded"  # EVAL cached it on the server
    server.command("SCRIPT", "FLUSH")
    assert await script(client, [], []) == "loaded"


async def test_error_replies_raise_and_leave_the_connection_usable(client: LeanRedis) -> None:
    with pytest.raises(ResponseError, match="boom"):
        await client.eval("return redis.error_reply('boom')", 0)
    assert await client.eval(ECHO, 0, "after", 3) == ["after", 6]


async def test_a_connection_killed_by_the_server_is_replaced_and_the_call_resent(client: LeanRedis, server: RedisServer) -> None:
    assert await client.eval(ECHO, 0, "before", 1) == ["before", 2]
    connection = client._protocol
    # Killed while this loop is not looking (no await in between), as when the server drops an
    # idle connection: the call goes out on the dead socket, fails, and is resent on a new one.
    server.command("CLIENT", "KILL", "TYPE", "normal")
    assert await client.eval(ECHO, 0, "after", 2) == ["after", 4]
    assert client._protocol is not connection


async def test_a_server_that_stops_answering_times_out_then_service_resumes(server: RedisServer) -> None:
    lean = LeanRedis(server.url, socket_timeout_s=0.3, connect_timeout_s=0.3)
    assert server.proc is not None
    try:
        assert await lean.eval(ECHO, 0, "x", 1) == ["x", 2]
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises((RedisTimeoutError, RedisConnectionError)):
                await lean.eval(ECHO, 0, "y", 1)
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        assert await lean.eval(ECHO, 0, "z", 5) == ["z", 10]
    finally:
        await lean.aclose()


async def test_nothing_listening_is_a_connection_error() -> None:
    from testkit.redis_server import free_port

    lean = LeanRedis(f"redis://127.0.0.1:{free_port()}/0", socket_timeout_s=1.0, connect_timeout_s=1.0)
    with pytest.raises(RedisConnectionError):
        await lean.eval(ECHO, 0, "x", 1)
    await lean.aclose()


async def test_password_and_database_from_the_url() -> None:
    with RedisServer() as srv:
        srv.command("CONFIG", "SET", "requirepass", "s3cret/pw")  # after start: the readiness PING has no password
        url = f"redis://:s3cret%2Fpw@{srv.host}:{srv.port}/3"
        lean = LeanRedis(url, socket_timeout_s=5.0, connect_timeout_s=5.0)
        plain = aioredis.Redis.from_url(url, decode_responses=True)
        try:
            await lean.eval("return redis.call('SET', KEYS[1], ARGV[1])", 1, "where", "db3")
            assert await plain.get("where") == "db3"  # db 3, as the URL says
            wrong = LeanRedis(f"redis://:nope@{srv.host}:{srv.port}/0", socket_timeout_s=5.0, connect_timeout_s=5.0)
            with pytest.raises(ResponseError):
                await wrong.eval(ECHO, 0, "x", 1)
            await wrong.aclose()
        finally:
            await lean.aclose()
            await plain.aclose()


async def test_bytes_that_are_not_resp_fail_the_call_instead_of_hanging() -> None:
    async def garbage(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _reader.read(100)
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)
        writer.close()

    fake = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = fake.sockets[0].getsockname()[1]
    lean = LeanRedis(f"redis://127.0.0.1:{port}/0", socket_timeout_s=3.0, connect_timeout_s=3.0)
    try:
        with pytest.raises(RedisConnectionError, match="protocol"):
            await lean.eval(ECHO, 0, "x", 1)
    finally:
        await lean.aclose()
        fake.close()


async def test_the_ledger_runs_its_scripts_on_the_lean_client_and_maps_failures(server: RedisServer) -> None:
    ledger = RedisLedger(LedgerSettings(redis_url=server.url, key_prefix="lean", redis_socket_timeout_s=5.0))
    scope = BudgetScope(tenant_id="acme", windows=(WindowLimit(window="day", limit_usd=1.0),))
    try:
        assert isinstance(ledger._scripts_client, LeanRedis)
        holds = await asyncio.gather(*(ledger.reserve(scope, 0.3) for _ in range(5)), return_exceptions=True)
        granted = [h for h in holds if not isinstance(h, BaseException)]
        assert len(granted) == 3  # 3 x 0.3 fits in 1.0, a fourth does not
        for hold in granted:
            await ledger.settle(hold, 0.1)
        usage = await ledger.usage(scope)
        assert usage.windows[0].spent_usd == pytest.approx(0.3)
        server.stop()
        with pytest.raises(LedgerUnavailable):
            await ledger.reserve(scope, 0.1)
    finally:
        await ledger.close()
