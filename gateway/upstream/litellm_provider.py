"""Upstream calls through litellm: every provider litellm knows, plus our local models."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import litellm

from gateway.config import ModelConfig
from gateway.upstream.base import Json
from gateway.upstream.errors import UpstreamError, classify_status
from gateway.upstream.local_provider import register_local_provider

litellm.telemetry = False
litellm.suppress_debug_info = True
register_local_provider()

_CHUNK_KEYS = ("id", "object", "created", "model", "system_fingerprint", "choices", "usage")
_RESPONSE_KEYS = ("id", "object", "created", "model", "system_fingerprint", "choices", "usage")


def _translate(error: Exception) -> UpstreamError:
    if isinstance(error, UpstreamError):
        return error
    message = str(getattr(error, "message", None) or error)[:500]
    if isinstance(error, litellm.Timeout):
        return UpstreamError("timeout", message, status=408)
    if isinstance(error, litellm.APIConnectionError):
        return UpstreamError("connection", message)
    if isinstance(error, litellm.UnsupportedParamsError):
        return UpstreamError("unsupported", message, status=400)
    status = getattr(error, "status_code", None)
    if isinstance(status, int):
        return UpstreamError(classify_status(status), message, status=status)
    return UpstreamError("server_error", message)


def _plain(obj: Any, keys: tuple[str, ...]) -> Json:
    data = obj.model_dump(exclude_none=True) if hasattr(obj, "model_dump") else dict(obj)
    return {key: data[key] for key in keys if key in data}


class LitellmUpstream:
    def _kwargs(self, model: ModelConfig, body: Json) -> dict[str, Any]:
        kwargs = model.litellm_params.resolved()
        kwargs.pop("model_path", None)
        kwargs.update(body)
        if "user" in kwargs and model.litellm_params.model.startswith("openai/"):
            # litellm 1.106 silently drops `user` for OpenAI-compatible providers; extra_body keeps it.
            kwargs.setdefault("extra_body", {})["user"] = kwargs.pop("user")
        kwargs["timeout"] = model.timeout_s
        # Retries and fallbacks are ours (gateway.upstream.resilience), so each attempt is visible.
        kwargs["num_retries"] = 0
        kwargs["max_retries"] = 0
        kwargs["drop_params"] = True
        return kwargs

    async def complete(self, model: ModelConfig, body: Json) -> Json:
        try:
            response = await litellm.acompletion(**self._kwargs(model, body))
        except Exception as error:  # every litellm failure becomes a classified UpstreamError
            raise _translate(error) from None
        return _plain(response, _RESPONSE_KEYS)

    async def stream(self, model: ModelConfig, body: Json) -> AsyncIterator[Json]:
        kwargs = self._kwargs(model, body)
        kwargs["stream"] = True
        kwargs["stream_options"] = {"include_usage": True}
        try:
            response = await litellm.acompletion(**kwargs)
            async for chunk in response:
                yield _plain(chunk, _CHUNK_KEYS)
        except Exception as error:
            raise _translate(error) from None

    async def embed(self, model: ModelConfig, body: Json) -> Json:
        kwargs = model.litellm_params.resolved()
        kwargs.pop("model_path", None)
        kwargs.update(body)
        kwargs["timeout"] = model.timeout_s
        try:
            response = await litellm.aembedding(**kwargs)
        except Exception as error:
            raise _translate(error) from None
        data = response.model_dump(exclude_none=True) if hasattr(response, "model_dump") else dict(response)
        return {k: data[k] for k in ("object", "data", "model", "usage") if k in data}

    async def aclose(self) -> None:
        return None
