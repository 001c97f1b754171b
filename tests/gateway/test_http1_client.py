"""The lean keep-alive client against a scripted raw-socket upstream that misbehaves on purpose.

A fake server is the point here: these are the faults (stale pooled sockets, closes mid-answer,
malformed bytes, silence) that a real provider shows only rarely and never on demand.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Self

import orjson
import pytest

from gateway.config import ModelConfig
from gateway.upstream import http1
from gateway.upstream.errors import UpstreamError
from gateway.upstream.openai_compat import OpenAICompatUpstream

# (connection index, request index on that connection, request body, writer) -> None
Behaviour = Callable[[int, int, bytes, asyncio.StreamWriter], Awaitable[None]]


def ok(body: bytes, extra_headers: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n{extra_headers}\r\n".encode() + body


async def echo(_: int, __: int, body: bytes, writer: asyncio.StreamWriter) -> None:
    writer.write(ok(orjson.dumps({"echo": orjson.loads(body)})))


class ScriptedServer:
    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.connections = 0
        self.requests: list[bytes] = []
        self.eofs = 0
        self.port = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = self.connections
        self.connections += 1
        try:
            for request_index in range(1000):
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                await self.behaviour(index, request_index, body, writer)
                await writer.drain()
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            self.eofs += 1
        finally:
            writer.close()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()


@pytest.fixture
async def client() -> AsyncIterator[http1.Http1Client]:
    lean = http1.Http1Client()
    yield lean
    lean.close()


def model_for(port: int, timeout_s: float = 5.0) -> ModelConfig:
    return ModelConfig.model_validate({"name": "m", "timeout_s": timeout_s,
                                       "litellm_params": {"model": "openai/up", "api_base": f"http://127.0.0.1:{port}/v1", "api_key": "k"}})


async def error_from(port: int) -> UpstreamError:
    """The UpstreamError one call to the upstream on `port` ends in."""
    upstream = OpenAICompatUpstream()
    try:
        with pytest.raises(UpstreamError) as caught:
            await upstream.complete(model_for(port), {"messages": []})
    finally:
        await upstream.aclose()
    return caught.value


async def test_sequential_posts_share_one_connection_and_send_the_body(client: http1.Http1Client) -> None:
    async with ScriptedServer(echo) as server:
        origin = client.origin("127.0.0.1", server.port, "secret")
        answers = [await origin.post("/v1/x", orjson.dumps({"i": i})) for i in range(3)]
    assert [orjson.loads(a.body)["echo"]["i"] for a in answers] == [0, 1, 2]
    assert server.connections == 1
    assert b"authorization: Bearer secret" in server.requests[0]
    assert server.requests[0].startswith(b"POST /v1/x HTTP/1.1\r\n")


async def test_concurrent_posts_each_get_their_own_answer(client: http1.Http1Client) -> None:
    async def slow_echo(c: int, r: int, body: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.01 * (orjson.loads(body)["i"] % 3))
        await echo(c, r, body, writer)

    async with ScriptedServer(slow_echo) as server:
        origin = client.origin("127.0.0.1", server.port, None)
        answers = await asyncio.gather(*(origin.post("/x", orjson.dumps({"i": i})) for i in range(60)))
        again = await asyncio.gather(*(origin.post("/x", orjson.dumps({"i": i})) for i in range(60)))
    assert [orjson.loads(a.body)["echo"]["i"] for a in answers + again] == list(range(60)) * 2
    assert server.connections == 60  # the second wave reused the pooled connections


async def test_a_pooled_connection_the_server_dropped_is_retried_once_on_a_fresh_one(client: http1.Http1Client) -> None:
    async def drop_second_request(c: int, r: int, body: bytes, writer: asyncio.StreamWriter) -> None:
        if c == 0 and r == 1:
            writer.close()  # as a server whose keep-alive timer fired just as the request arrived
            return
        await echo(c, r, body, writer)

    async with ScriptedServer(drop_second_request) as server:
        origin = client.origin("127.0.0.1", server.port, None)
        await origin.post("/x", b'{"i": 1}')
        second = await origin.post("/x", b'{"i": 2}')
    assert orjson.loads(second.body) == {"echo": {"i": 2}}
    assert server.connections == 2


async def test_a_close_mid_answer_is_an_error_and_is_not_resent() -> None:
    async def half_answer(c: int, r: int, body: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"partial\"")
        await writer.drain()
        writer.close()

    async with ScriptedServer(half_answer) as server:
        error = await error_from(server.port)
    assert error.kind == "connection"
    assert len(server.requests) == 1  # a POST the upstream may have acted on is never sent twice


async def test_malformed_bytes_are_a_connection_error() -> None:
    async def garbage(c: int, r: int, body: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SMTP ready\r\n\r\n")

    async with ScriptedServer(garbage) as server:
        error = await error_from(server.port)
    assert error.kind == "connection"


async def test_chunked_and_close_delimited_bodies_are_read_whole(client: http1.Http1Client) -> None:
    async def chunked(c: int, r: int, body: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n3\r\n 1}\r\n0\r\n\r\n")

    async def until_close(c: int, r: int, body: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n{\"b\": 2}")
        await writer.drain()
        writer.close()

    async with ScriptedServer(chunked) as server:
        first = await client.origin("127.0.0.1", server.port, None).post("/x", b"{}")
    async with ScriptedServer(until_close) as server:
        origin = client.origin("127.0.0.1", server.port, None)
        second = await origin.post("/x", b"{}")
        third = await origin.post("/x", b"{}")
    assert orjson.loads(first.body) == {"a": 1}
    assert orjson.loads(second.body) == orjson.loads(third.body) == {"b": 2}
    assert server.connections == 2  # "connection: close" is honoured: no reuse


async def test_silence_times_out_and_the_socket_is_not_reused() -> None:
    async def silent_first(c: int, r: int, body: bytes, writer: asyncio.StreamWriter) -> None:
        if c == 0:
            await asyncio.sleep(5)
            return
        await echo(c, r, body, writer)

    upstream = OpenAICompatUpstream()
    async with ScriptedServer(silent_first) as server:
        with pytest.raises(UpstreamError) as caught:
            await upstream.complete(model_for(server.port, timeout_s=0.2), {"messages": []})
        answer = await upstream.complete(model_for(server.port), {"messages": [], "i": 3})
    await upstream.aclose()
    assert caught.value.kind == "timeout"
    assert answer["echo"]["i"] == 3 and answer["echo"]["model"] == "up"
    assert server.connections == 2


async def test_error_statuses_keep_their_class_and_retry_after(client: http1.Http1Client) -> None:
    async def limited(c: int, r: int, body: bytes, writer: asyncio.StreamWriter) -> None:
        error = orjson.dumps({"error": {"message": "slow down"}})
        writer.write(f"HTTP/1.1 429 Too Many Requests\r\nretry-after: 7\r\ncontent-length: {len(error)}\r\n\r\n".encode() + error)

    async with ScriptedServer(limited) as server:
        error = await error_from(server.port)
    assert (error.kind, error.message, error.retry_after_s) == ("rate_limited", "slow down", 7.0)


async def test_a_refused_connection_is_a_connection_error() -> None:
    async with ScriptedServer(echo) as server:
        port = server.port
    error = await error_from(port)
    assert error.kind == "connection"
