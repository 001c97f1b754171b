"""The one interface every upstream implementation offers the request pipeline.

Bodies and responses are plain OpenAI-format dicts: they are what goes on the wire, and
keeping them as dicts avoids re-validating every upstream response on the hot path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from gateway.config import ModelConfig

Json = dict[str, Any]


class ChatUpstream(Protocol):
    async def complete(self, model: ModelConfig, body: Json) -> Json:
        """One non-streamed attempt; raises UpstreamError."""
        ...

    def stream(self, model: ModelConfig, body: Json) -> AsyncIterator[Json]:
        """One streamed attempt yielding chat.completion.chunk dicts; the upstream is asked for a usage chunk."""
        ...

    async def embed(self, model: ModelConfig, body: Json) -> Json:
        ...

    async def aclose(self) -> None:
        ...


def token_count(value: object) -> int | None:
    """A usage field as a token count, or None when an upstream sent something that is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        return None
    return int(value)


def reported_usage(response: object) -> tuple[int, int] | None:
    """(prompt, completion) tokens the upstream reported, or None when it reported none or
    nonsense (text, negative numbers): the caller then counts the text itself."""
    usage = response.get("usage") if isinstance(response, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt, completion = token_count(usage.get("prompt_tokens", 0)), token_count(usage.get("completion_tokens", 0))
    if prompt is None or completion is None:
        return None
    return prompt, completion


def usage_of(response: Json) -> tuple[int, int]:
    return reported_usage(response) or (0, 0)
