"""Reading an upstream's event stream: opened at its first event, relayed, and closed whatever happened."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator

from gateway.upstream import Json

log = logging.getLogger("ttc.relay")


async def opened_at_first_event(stream: AsyncIterable[Json]) -> tuple[AsyncIterator[Json], Json | None]:
    """The stream with its first event read, so that a failure before any output can still fall back."""
    iterator = stream.__aiter__()
    try:
        return iterator, await iterator.__anext__()
    except StopAsyncIteration:
        return iterator, None


async def relayed(first: Json | None, iterator: AsyncIterator[Json]) -> AsyncIterator[Json]:
    """The first event, already read, followed by the rest of the stream."""
    event = first
    while event is not None:
        yield event
        try:
            event = await iterator.__anext__()
        except StopAsyncIteration:
            event = None


async def close_quietly(iterator: AsyncIterator[Json]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is None:
        return
    try:
        await aclose()
    except Exception:  # closing a broken upstream stream must not block settlement
        log.debug("closing upstream stream failed", exc_info=True)
