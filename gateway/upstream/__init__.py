"""Upstream layer: picks the implementation per model and applies retries and fallbacks."""

from __future__ import annotations

from collections.abc import AsyncIterator

from gateway.config import ModelConfig
from gateway.upstream import openai_compat
from gateway.upstream.anthropic_native import AnthropicMessagesClient
from gateway.upstream.base import ChatUpstream, Json, reported_usage, usage_of
from gateway.upstream.errors import UpstreamError
from gateway.upstream.resilience import call_with_fallbacks, fallback_chain

__all__ = ["Upstreams", "ChatUpstream", "Json", "UpstreamError", "usage_of", "reported_usage", "call_with_fallbacks", "fallback_chain"]


class Upstreams:
    """Routes each model to the fast OpenAI-compatible path or to litellm."""

    def __init__(self) -> None:
        self._fast = openai_compat.OpenAICompatUpstream()
        self._litellm: ChatUpstream | None = None
        self.anthropic = AnthropicMessagesClient()  # for /v1/messages served by an Anthropic model as sent

    def for_model(self, model: ModelConfig) -> ChatUpstream:
        if openai_compat.eligible(model):
            return self._fast
        if self._litellm is None:
            # Imported on first use: litellm costs about a second to import.
            from gateway.upstream.litellm_provider import LitellmUpstream

            self._litellm = LitellmUpstream()
        return self._litellm

    async def complete(self, model: ModelConfig, body: Json) -> Json:
        return await self.for_model(model).complete(model, body)

    def stream(self, model: ModelConfig, body: Json) -> AsyncIterator[Json]:
        return self.for_model(model).stream(model, body)

    async def embed(self, model: ModelConfig, body: Json) -> Json:
        return await self.for_model(model).embed(model, body)

    async def aclose(self) -> None:
        await self._fast.aclose()
        await self.anthropic.aclose()
        if self._litellm is not None:
            await self._litellm.aclose()
