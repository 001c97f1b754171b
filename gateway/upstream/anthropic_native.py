"""Anthropic's Messages API, spoken natively: a `/v1/messages` request served by an Anthropic model
goes through as the client sent it, so nothing the chat form has no place for (thinking blocks and
their signatures, cache_control, server tools, betas) is lost in a round trip through it.

A model is served this way when its litellm model is `anthropic/<id>`; `api_base` defaults to
Anthropic's own, and `native_messages: false` in its litellm_params turns the path off.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import aiohttp
import orjson

from gateway.config import ModelConfig
from gateway.upstream.base import Json, token_count
from gateway.upstream.errors import UpstreamError, classify_status

PREFIX = "anthropic/"
DEFAULT_BASE = "https://api.anthropic.com"
DEFAULT_VERSION = "2023-06-01"
# Client headers that mean something to Anthropic and nothing to the gateway.
FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")
_CONNECTION_ERRORS = (aiohttp.ClientError, ConnectionError, OSError)


def speaks_messages(model: ModelConfig) -> bool:
    params = model.litellm_params
    return params.model.startswith(PREFIX) and (params.model_extra or {}).get("native_messages", True) is not False


def native_usage(payload: Mapping[str, object]) -> tuple[int, int] | None:
    """(input, output) tokens of a Message or a stream event's `usage`; cached input is input too."""
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return None
    counts = [token_count(usage.get(key, 0) or 0) for key in
              ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")]
    if any(count is None for count in counts):
        return None
    fresh, created, read, output = (count or 0 for count in counts)
    return fresh + created + read, output


def _error(status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
    message = body[:500].decode("utf-8", "replace")
    try:
        message = str(orjson.loads(body)["error"]["message"])
    except Exception:  # a body that is not Anthropic's error shape is reported as text
        pass
    retry_after = headers.get("retry-after")
    kind = "server_error" if status == 529 else classify_status(status)  # 529: Anthropic is overloaded
    return UpstreamError(kind, message, status=status,
                         retry_after_s=float(retry_after) if retry_after and retry_after.isdigit() else None)


class AnthropicMessagesClient:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(json_serialize=lambda value: orjson.dumps(value).decode())
        return self._session

    @staticmethod
    def _target(model: ModelConfig, body: Json, client_headers: Mapping[str, str]) -> tuple[str, Json, dict[str, str]]:
        params = model.litellm_params.resolved()
        url = str(params.get("api_base") or DEFAULT_BASE).rstrip("/")
        url = url + ("/messages" if url.endswith("/v1") else "/v1/messages")
        headers = {"content-type": "application/json", "anthropic-version": DEFAULT_VERSION}
        headers.update({name: value for name, value in client_headers.items() if name in FORWARDED_HEADERS})
        if params.get("api_key"):
            headers["x-api-key"] = str(params["api_key"])
        return url, {**body, "model": model.litellm_params.model[len(PREFIX):]}, headers

    async def complete(self, model: ModelConfig, body: Json, client_headers: Mapping[str, str]) -> Json:
        url, payload, headers = self._target(model, {**body, "stream": False}, client_headers)
        try:
            async with self._open().post(url, data=orjson.dumps(payload), headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=model.timeout_s)) as response:
                content = await response.read()
                if response.status >= 400:
                    raise _error(response.status, response.headers, content)
        except TimeoutError:
            raise UpstreamError("timeout", f"no answer within {model.timeout_s}s", status=408) from None
        except _CONNECTION_ERRORS as error:
            raise UpstreamError("connection", str(error) or type(error).__name__) from None
        try:
            message = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise UpstreamError("server_error", "the upstream sent a body that is not JSON") from None
        if not isinstance(message, dict) or message.get("type") != "message" or not isinstance(message.get("content"), list):
            raise UpstreamError("server_error", "the upstream answered with a malformed message")
        return message

    async def stream(self, model: ModelConfig, body: Json, client_headers: Mapping[str, str]) -> AsyncIterator[Json]:
        """The upstream's events, parsed; an `error` event becomes an UpstreamError."""
        url, payload, headers = self._target(model, {**body, "stream": True}, client_headers)
        try:
            async with self._open().post(url, data=orjson.dumps(payload), headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=None, sock_read=model.timeout_s)) as response:
                if response.status >= 400:
                    raise _error(response.status, response.headers, await response.read())
                async for raw in response.content:
                    line = raw.strip()
                    if not line.startswith(b"data:"):
                        continue  # `event:` names repeat the payload's `type`; blank lines end events
                    try:
                        event = orjson.loads(line[5:])
                    except orjson.JSONDecodeError:
                        raise UpstreamError("server_error", "the upstream sent a stream event that is not JSON") from None
                    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                        raise UpstreamError("server_error", "the upstream sent a malformed stream event")
                    if event["type"] == "error":
                        detail = event.get("error") if isinstance(event.get("error"), dict) else {}
                        overloaded = detail.get("type") == "overloaded_error"
                        raise UpstreamError("server_error" if overloaded else "bad_request", str(detail.get("message") or "stream error"))
                    yield event
        except TimeoutError:
            raise UpstreamError("timeout", f"no data within {model.timeout_s}s", status=408) from None
        except _CONNECTION_ERRORS as error:
            raise UpstreamError("connection", str(error) or type(error).__name__) from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
