"""Retries with backoff on retryable failures, then fallbacks to the next listed model."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from gateway.config import GatewayConfig, ModelConfig
from gateway.upstream.errors import UpstreamError

T = TypeVar("T")

BASE_BACKOFF_S = 0.1
MAX_BACKOFF_S = 4.0


def fallback_chain(config: GatewayConfig, model: ModelConfig) -> list[ModelConfig]:
    chain = [model]
    for name in model.fallbacks:
        candidate = config.model(name)
        if candidate is not None and candidate not in chain:
            chain.append(candidate)
    return chain


def backoff_s(attempt: int, retry_after_s: float | None) -> float:
    if retry_after_s is not None:
        return min(retry_after_s, MAX_BACKOFF_S)
    # Full jitter keeps many replicas from retrying in lockstep.
    return random.uniform(0, min(MAX_BACKOFF_S, BASE_BACKOFF_S * 2**attempt))


async def call_with_fallbacks(
    chain: list[ModelConfig],
    attempt: Callable[[ModelConfig], Awaitable[T]],
    on_error: Callable[[ModelConfig, UpstreamError], None],
) -> tuple[T, ModelConfig]:
    last: UpstreamError | None = None
    for model in chain:
        for retry in range(model.max_retries + 1):
            try:
                return await attempt(model), model
            except UpstreamError as error:
                on_error(model, error)
                last = error
                if error.kind in ("bad_request", "unsupported"):
                    raise  # the request itself is wrong: another model or attempt will not fix it
                if not error.retryable or retry == model.max_retries:
                    break
                await asyncio.sleep(backoff_s(retry, error.retry_after_s))
    assert last is not None
    raise last
