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


def usage_of(response: Json) -> tuple[int, int]:
    usage = response.get("usage") or {}
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
