"""Fast path for OpenAI-compatible upstreams (vLLM, llama.cpp server, TGI, OpenAI itself).

litellm's per-call work (parameter mapping, logging objects, response re-construction) costs
several CPU-milliseconds per request. For an upstream that already speaks the OpenAI wire
format none of that is needed, so we forward the body with one pooled httpx client per base
URL and orjson. Everything else still goes through litellm.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from gateway.config import ModelConfig
from gateway.upstream.base import Json
from gateway.upstream.errors import UpstreamError, classify_status

FAST_PATH_PREFIXES = ("openai/",)


def eligible(model: ModelConfig) -> bool:
    params = model.litellm_params
    fast = (params.model_extra or {}).get("fast_path", "auto")
    if fast is False or fast == "off":
        return False
    return bool(params.api_base) and params.model.startswith(FAST_PATH_PREFIXES)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _error_from(response: httpx.Response, body: bytes) -> UpstreamError:
    message = body[:500].decode("utf-8", "replace")
    try:
        message = orjson.loads(body)["error"]["message"]
    except Exception:  # non-JSON error bodies are reported as text
        pass
    return UpstreamError(classify_status(response.status_code), str(message), status=response.status_code, retry_after_s=_retry_after(response))


class OpenAICompatUpstream:
    def __init__(self) -> None:
        self._clients: dict[tuple[str, str | None], httpx.AsyncClient] = {}

    def _client(self, model: ModelConfig) -> tuple[httpx.AsyncClient, str]:
        params = model.litellm_params.resolved()
        base = str(params["api_base"]).rstrip("/")
        key = params.get("api_key")
        client = self._clients.get((base, key))
        if client is None:
            headers = {"content-type": "application/json"}
            if key:
                headers["authorization"] = f"Bearer {key}"
            client = httpx.AsyncClient(
                base_url=base,
                headers=headers,
                limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200),
                timeout=httpx.Timeout(model.timeout_s),
            )
            self._clients[(base, key)] = client
        return client, params["model"].split("/", 1)[1]

    def _payload(self, upstream_model: str, body: Json, extra: dict[str, Any] | None = None) -> bytes:
        payload = dict(body)
        payload["model"] = upstream_model
        if extra:
            payload.update(extra)
        return orjson.dumps(payload)

    async def complete(self, model: ModelConfig, body: Json) -> Json:
        client, upstream_model = self._client(model)
        try:
            response = await client.post("/chat/completions", content=self._payload(upstream_model, body), timeout=model.timeout_s)
        except httpx.TimeoutException as error:
            raise UpstreamError("timeout", f"no answer within {model.timeout_s}s ({type(error).__name__})") from None
        except httpx.HTTPError as error:
            raise UpstreamError("connection", f"{type(error).__name__}: {error}") from None
        if response.status_code >= 400:
            raise _error_from(response, response.content)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise UpstreamError("server_error", "upstream sent a body that is not JSON") from None

    async def stream(self, model: ModelConfig, body: Json) -> AsyncIterator[Json]:
        client, upstream_model = self._client(model)
        payload = self._payload(upstream_model, body, {"stream": True, "stream_options": {"include_usage": True}})
        try:
            async with client.stream("POST", "/chat/completions", content=payload, timeout=model.timeout_s) as response:
                if response.status_code >= 400:
                    raise _error_from(response, await response.aread())
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    try:
                        yield orjson.loads(data)
                    except orjson.JSONDecodeError:
                        raise UpstreamError("server_error", "upstream sent a stream event that is not JSON") from None
        except httpx.TimeoutException as error:
            raise UpstreamError("timeout", f"stream stalled past {model.timeout_s}s ({type(error).__name__})") from None
        except httpx.HTTPError as error:
            raise UpstreamError("connection", f"{type(error).__name__}: {error}") from None

    async def embed(self, model: ModelConfig, body: Json) -> Json:
        client, upstream_model = self._client(model)
        try:
            response = await client.post("/embeddings", content=self._payload(upstream_model, body), timeout=model.timeout_s)
        except httpx.TimeoutException:
            raise UpstreamError("timeout", f"no answer within {model.timeout_s}s") from None
        except httpx.HTTPError as error:
            raise UpstreamError("connection", f"{type(error).__name__}: {error}") from None
        if response.status_code >= 400:
            raise _error_from(response, response.content)
        return orjson.loads(response.content)

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
