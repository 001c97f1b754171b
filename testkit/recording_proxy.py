"""A reverse proxy that records what a client sends (path, query, size, a few headers and body
fields) and the status it got back, relaying everything else untouched, streams included. For
watching a third-party client, such as a coding agent CLI, talk to the gateway."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from testkit.asgi import read_body, run_lifespan

Scope = dict[str, Any]
HOP_BY_HOP = {b"host", b"content-length", b"transfer-encoding", b"connection", b"accept-encoding"}


@dataclass
class Exchange:
    method: str
    path: str
    query: str
    request_bytes: int
    headers: dict[str, str]
    model: str | None = None
    stream: bool | None = None
    body_keys: list[str] = field(default_factory=list)
    tool_types: list[str] = field(default_factory=list)  # one per declared tool: its `type`, or "client" when it has none
    status: int = 0
    response_bytes: int = 0


def _exchange(scope: Scope, raw: bytes) -> Exchange:
    headers = {k.decode().lower(): v.decode(errors="replace") for k, v in scope["headers"]}
    kept = {k: v for k, v in headers.items() if k.startswith(("anthropic-", "x-stainless-", "openai-")) or k in ("user-agent", "accept")}
    exchange = Exchange(scope["method"], scope["path"], scope.get("query_string", b"").decode(), len(raw), kept)
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict):
        exchange.model = body.get("model") if isinstance(body.get("model"), str) else None
        exchange.stream = bool(body.get("stream"))
        exchange.body_keys = sorted(body)
        exchange.tool_types = [str(t.get("type") or "client") for t in body.get("tools") or [] if isinstance(t, dict)]
    return exchange


class RecordingProxy:
    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.exchanges: list[Exchange] = []
        self.client: httpx.AsyncClient | None = None

    def _open_client(self) -> None:
        self.client = httpx.AsyncClient(timeout=300)

    async def _close_client(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await run_lifespan(receive, send, self._open_client, self._close_client)
            return
        assert self.client is not None
        raw = await read_body(receive)
        exchange = _exchange(scope, raw)
        self.exchanges.append(exchange)
        url = self.target + scope["path"] + (("?" + exchange.query) if exchange.query else "")
        # identity: the bytes are relayed as they come, so they must come unencoded
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_BY_HOP] + [(b"accept-encoding", b"identity")]
        request = self.client.build_request(scope["method"], url, headers=headers, content=raw)
        response = await self.client.send(request, stream=True)
        exchange.status = response.status_code
        out_headers = [(k.encode(), v.encode()) for k, v in response.headers.items() if k.lower().encode() not in HOP_BY_HOP]
        await send({"type": "http.response.start", "status": response.status_code, "headers": out_headers})
        try:
            async for piece in response.aiter_raw():
                exchange.response_bytes += len(piece)
                await send({"type": "http.response.body", "body": piece, "more_body": True})
        finally:
            await response.aclose()
        await send({"type": "http.response.body", "body": b"", "more_body": False})
