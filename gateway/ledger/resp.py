"""A lean, pipelined RESP client for the ledger's per-request script calls on standalone Redis.

Why not redis-py for these: every request makes two script calls (reserve, then settle), and
redis-py spends most of its time per call in Python around the socket: command packing through
its encoder, connection-pool checkout, retry and timeout wrappers. Measured to loopback on the
2-core bench machine that is several times the CPU of an asyncio protocol that packs with
hiredis and parses with hiredis's reader (see bench/RESULTS.md). At concurrency 1 the reserve
sits on the critical path of every request.

What it does: one TCP or unix-socket connection per ledger, shared by every caller; commands are
written as soon as they are issued and replies come back in order (Redis answers a connection's
commands in order), so concurrent requests pipeline on one socket. It speaks only what the hot
path needs: AUTH/SELECT at connect, EVALSHA/EVAL, plain replies. TLS, Cluster and every other
command stay on redis-py.

Failure model, mirroring how the ledger configures redis-py: a connection error or a timeout
fails every pending call on that connection with redis-py's ConnectionError/TimeoutError (the
ledger maps those to LedgerUnavailable), the next call reconnects, and a call whose connection
broke is resent once on a fresh one. That resend is safe because every ledger script is
idempotent on its client-generated id.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis
from redis.exceptions import BusyLoadingError, NoScriptError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

LEAN_SCHEMES = frozenset({"redis", "unix"})


class CommandNotSent(RedisConnectionError):
    """No connection could be made, so the command never left this process: it certainly did
    not run (unlike a timeout or a connection lost after sending, where it may have)."""


def supports(url: str) -> bool:
    """Plain-TCP and unix-socket standalone URLs; TLS and Cluster stay on redis-py."""
    return urlsplit(url).scheme in LEAN_SCHEMES


def reply_error(message: str) -> RedisError:
    # The two error replies the ledger treats specially; everything else is a plain ResponseError.
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    if message.startswith("LOADING"):
        return BusyLoadingError(message)
    return ResponseError(message)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader(encoding="utf-8")
        self.pending: deque[asyncio.Future[Any]] = deque()
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                future = self.pending.popleft()
                if future.done():  # its caller gave up (cancelled); the reply still had to be consumed
                    continue
                if isinstance(reply, hiredis.ReplyError):
                    future.set_exception(reply_error(str(reply)))
                else:
                    future.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as error:
            # Bytes that are not RESP, or a reply nobody asked for: the stream can't be trusted.
            self.abort(RedisConnectionError(f"Redis protocol error: {error}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail_all(RedisConnectionError(f"Redis connection lost: {exc}" if exc else "Redis closed the connection"))

    def _fail_all(self, error: Exception) -> None:
        self.lost = self.lost or error
        while self.pending:
            future = self.pending.popleft()
            if not future.done():
                future.set_exception(error)

    def abort(self, error: Exception) -> None:
        self._fail_all(error)
        if self.transport is not None:
            self.transport.abort()

    def send(self, packed: bytes, future: asyncio.Future[Any]) -> None:
        assert self.transport is not None
        self.pending.append(future)
        self.transport.write(packed)


class LeanRedis:
    """``evalsha``/``eval`` with redis-py's signatures and exceptions, over one pipelined socket."""

    def __init__(self, url: str, *, socket_timeout_s: float, connect_timeout_s: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in LEAN_SCHEMES:
            raise ValueError(f"LeanRedis supports redis:// and unix:// URLs, not {parts.scheme}://")
        self._unix_path = parts.path if parts.scheme == "unix" else None
        self._host = parts.hostname or "localhost"
        self._port = parts.port or 6379
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self._db = self._db_of(parts.path if parts.scheme == "redis" else "", parts.query)
        self._socket_timeout_s = socket_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None
        self._closed = False

    @staticmethod
    def _db_of(path: str, query: str) -> int:
        for pair in query.split("&"):
            if pair.startswith("db="):
                return int(pair[3:])
        path = path.strip("/")
        return int(path) if path else 0

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        return await self.execute("EVALSHA", sha, numkeys, *keys_and_args)

    async def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Any:
        return await self.execute("EVAL", script, numkeys, *keys_and_args)

    async def execute(self, *command: Any) -> Any:
        packed = hiredis.pack_command(command)
        try:
            return await self._round_trip(packed)
        except (RedisConnectionError, RedisTimeoutError) as error:
            # Most often a connection the server closed while idle (restart, timeout, failover).
            sent = not isinstance(error, CommandNotSent)
        try:
            return await self._round_trip(packed)
        except CommandNotSent as error:
            if sent:  # the first attempt went out and may have run: the outcome is unknown
                raise RedisConnectionError(f"{error} (after a first attempt that may have run)") from error
            raise

    async def _round_trip(self, packed: bytes) -> Any:
        protocol = self._protocol
        if protocol is None or protocol.lost is not None:
            try:
                protocol = await self._connect()
            except (RedisConnectionError, RedisTimeoutError) as error:
                raise CommandNotSent(str(error)) from error
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        protocol.send(packed, future)
        # One timer per call, cancelled on the reply: far cheaper than asyncio.wait_for's task.
        timer = loop.call_later(self._socket_timeout_s, self._time_out, protocol, future)
        try:
            return await future
        finally:
            timer.cancel()

    def _time_out(self, protocol: _Protocol, future: asyncio.Future[Any]) -> None:
        if not future.done():
            # A server that leaves one call unanswered is not answering the calls queued behind it
            # either: fail them all now and reconnect on the next call, as redis-py does.
            protocol.abort(RedisTimeoutError(f"Redis did not answer within {self._socket_timeout_s} s"))

    async def _connect(self) -> _Protocol:
        if self._closed:
            raise RedisConnectionError("ledger client is closed")
        if self._connecting is None:
            # Concurrent callers share one connection attempt instead of racing to open several.
            self._connecting = asyncio.ensure_future(self._open())
        connecting = self._connecting
        try:
            return await asyncio.shield(connecting)
        finally:
            if connecting.done() and self._connecting is connecting:
                self._connecting = None

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                if self._unix_path is not None:
                    _, protocol = await loop.create_unix_connection(_Protocol, self._unix_path)
                else:
                    _, protocol = await loop.create_connection(_Protocol, self._host, self._port)
                try:
                    await self._handshake(protocol)
                except BaseException:
                    protocol.abort(RedisConnectionError("Redis handshake failed"))
                    raise
        except TimeoutError:
            raise RedisTimeoutError(f"could not connect to Redis within {self._connect_timeout_s} s") from None
        except OSError as error:
            raise RedisConnectionError(f"could not connect to Redis: {error}") from error
        if self._closed:
            protocol.abort(RedisConnectionError("ledger client is closed"))
            raise RedisConnectionError("ledger client is closed")
        self._protocol = protocol
        return protocol

    async def _handshake(self, protocol: _Protocol) -> None:
        commands: list[tuple[Any, ...]] = []
        if self._password is not None:
            commands.append(("AUTH", self._username, self._password) if self._username else ("AUTH", self._password))
        if self._db:
            commands.append(("SELECT", self._db))
        loop = asyncio.get_running_loop()
        for command in commands:
            future: asyncio.Future[Any] = loop.create_future()
            protocol.send(hiredis.pack_command(command), future)
            await future

    async def aclose(self) -> None:
        self._closed = True
        if self._protocol is not None:
            self._protocol.abort(RedisConnectionError("ledger client is closed"))
            self._protocol = None


__all__ = ["CommandNotSent", "LeanRedis", "supports"]
