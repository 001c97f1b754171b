"""Fast path for OpenAI-compatible upstreams (vLLM, llama.cpp server, TGI, OpenAI itself).

litellm's per-call work (parameter mapping, logging objects, response re-construction) costs
several CPU-milliseconds per request. For an upstream that already speaks the OpenAI wire
format none of that is needed, so we forward the body with one pooled aiohttp session per
base URL and orjson. aiohttp, not httpx: measured here, httpx's async client spent about ten
times more CPU per request (bench notes in bench/RESULTS.md). Non-streamed calls to plain-HTTP
upstreams (a vLLM or llama.cpp server next to the gateway) take the leaner client in http1.py.
Everything else goes through litellm.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from gateway.config import ModelConfig
from gateway.upstream import http1
from gateway.upstream.base import Json
from gateway.upstream.errors import UpstreamError, classify_status

FAST_PATH_PREFIXES = ("openai/",)
_CONNECTION_ERRORS = (aiohttp.ClientError, ConnectionError, OSError, http1.HttpError)
STALE_CONNECTION_ERRORS = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
_PlainTarget = tuple[http1.Origin, str, str]


def eligible(model: ModelConfig) -> bool:
    params = model.litellm_params
    fast = (params.model_extra or {}).get("fast_path", "auto")
    if fast is False or fast == "off":
        return False
    return bool(params.api_base) and params.model.startswith(FAST_PATH_PREFIXES)


def _retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after")
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _error_from(status: int, headers: Any, body: bytes) -> UpstreamError:
    message = body[:500].decode("utf-8", "replace")
    try:
        message = orjson.loads(body)["error"]["message"]
    except Exception:  # non-JSON error bodies are reported as text
        pass
    return UpstreamError(classify_status(status), str(message), status=status, retry_after_s=_retry_after(headers))


def _json_body(content: bytes) -> Json:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        raise UpstreamError("server_error", "upstream sent a body that is not JSON") from None


class OpenAICompatUpstream:
    def __init__(self) -> None:
        self._sessions: dict[tuple[str, str | None], aiohttp.ClientSession] = {}
        self._http1 = http1.Http1Client()
        self._plain_targets: dict[tuple[str, str | None, str | None], _PlainTarget | None] = {}

    def _plain_http_target(self, model: ModelConfig) -> _PlainTarget | None:
        """The lean client's origin, path prefix and upstream model name, or None for https upstreams."""
        raw = model.litellm_params
        key = (raw.model, raw.api_base, raw.api_key)  # raw strings: secrets resolve once, not per request
        if key in self._plain_targets:
            return self._plain_targets[key]
        params = raw.resolved()
        url = urlsplit(str(params["api_base"]))
        target = None
        if url.scheme == "http" and url.hostname:
            origin = self._http1.origin(url.hostname, url.port or 80, params.get("api_key"))
            target = origin, url.path.rstrip("/"), params["model"].split("/", 1)[1]
        self._plain_targets[key] = target
        return target

    def _session(self, model: ModelConfig) -> tuple[aiohttp.ClientSession, str, str]:
        params = model.litellm_params.resolved()
        base = str(params["api_base"]).rstrip("/")
        key = params.get("api_key")
        session = self._sessions.get((base, key))
        if session is None or session.closed:
            headers = {"content-type": "application/json"}
            if key:
                headers["authorization"] = f"Bearer {key}"
            # Idle connections are dropped before common server keep-alive timeouts (uvicorn: 5 s),
            # so a request is rarely written into a socket the upstream has just closed.
            connector = aiohttp.TCPConnector(limit=1000, limit_per_host=0, keepalive_timeout=4, ttl_dns_cache=300)
            session = aiohttp.ClientSession(headers=headers, connector=connector, json_serialize=lambda o: orjson.dumps(o).decode(),
                                            auto_decompress=True)
            self._sessions[(base, key)] = session
        return session, base, params["model"].split("/", 1)[1]

    @staticmethod
    def _payload(upstream_model: str, body: Json, extra: dict[str, Any] | None = None) -> bytes:
        payload = dict(body)
        payload["model"] = upstream_model
        if extra:
            payload.update(extra)
        return orjson.dumps(payload)

    async def _post(self, model: ModelConfig, path: str, body: Json) -> Json:
        target = self._plain_http_target(model)
        if target is not None:
            return await self._post_plain(model, target, path, body)
        session, base, upstream_model = self._session(model)
        payload = self._payload(upstream_model, body)
        try:
            for attempt in range(2):
                try:
                    async with session.post(base + path, data=payload, timeout=aiohttp.ClientTimeout(total=model.timeout_s)) as response:
                        content = await response.read()
                        if response.status >= 400:
                            raise _error_from(response.status, response.headers, content)
                    break
                except STALE_CONNECTION_ERRORS:
                    if attempt:
                        raise
                    # Almost always a pooled connection the upstream closed while it sat idle, in which
                    # case the request never arrived: one more try on a fresh connection.
        except TimeoutError:
            raise UpstreamError("timeout", f"no answer within {model.timeout_s}s") from None
        except _CONNECTION_ERRORS as error:
            raise UpstreamError("connection", f"{type(error).__name__}: {error}") from None
        return _json_body(content)

    async def _post_plain(self, model: ModelConfig, target: _PlainTarget, path: str, body: Json) -> Json:
        origin, prefix, upstream_model = target
        try:
            async with asyncio.timeout(model.timeout_s):
                response = await origin.post(prefix + path, self._payload(upstream_model, body))
        except TimeoutError:
            raise UpstreamError("timeout", f"no answer within {model.timeout_s}s") from None
        except _CONNECTION_ERRORS as error:
            raise UpstreamError("connection", f"{type(error).__name__}: {error}") from None
        if response.status >= 400:
            raise _error_from(response.status, response.headers, response.body)
        return _json_body(response.body)

    async def complete(self, model: ModelConfig, body: Json) -> Json:
        return await self._post(model, "/chat/completions", body)

    async def embed(self, model: ModelConfig, body: Json) -> Json:
        return await self._post(model, "/embeddings", body)

    async def stream(self, model: ModelConfig, body: Json) -> AsyncIterator[Json]:
        session, base, upstream_model = self._session(model)
        payload = self._payload(upstream_model, body, {"stream": True, "stream_options": {"include_usage": True}})
        # A stream may legitimately run long; what must not happen is a silent stall.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=model.timeout_s, sock_read=model.timeout_s)
        try:
            response = await self._open(session, base + "/chat/completions", payload, timeout)
            try:
                if response.status >= 400:
                    raise _error_from(response.status, response.headers, await response.read())
                async for raw in response.content:
                    line = raw.strip()
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        continue  # read on to EOF, so the connection goes back to the pool reusable
                    try:
                        yield orjson.loads(data)
                    except orjson.JSONDecodeError:
                        raise UpstreamError("server_error", "upstream sent a stream event that is not JSON") from None
            finally:
                response.release()
        except TimeoutError:
            raise UpstreamError("timeout", f"stream stalled past {model.timeout_s}s") from None
        except _CONNECTION_ERRORS as error:
            raise UpstreamError("connection", f"{type(error).__name__}: {error}") from None

    @staticmethod
    async def _open(session: aiohttp.ClientSession, url: str, payload: bytes, timeout: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
        try:
            return await session.post(url, data=payload, timeout=timeout)
        except STALE_CONNECTION_ERRORS:
            return await session.post(url, data=payload, timeout=timeout)  # see _post: once, on a fresh connection

    async def aclose(self) -> None:
        self._http1.close()
        self._plain_targets.clear()
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()
