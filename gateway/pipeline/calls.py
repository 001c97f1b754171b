"""Upstream calls with retries and fallbacks, their failures counted: the call in
reserve → call → record → settle. Plain requests, strategies, embeddings and the offline
jobs all call models through this one class."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from gateway.config import GatewayConfig, ModelConfig
from gateway.metrics import Metrics
from gateway.pipeline.relay import opened_at_first_event
from gateway.upstream import Json, Upstreams, UpstreamError, call_with_fallbacks, fallback_chain, usage_of

log = logging.getLogger("ttc.upstream")

T = TypeVar("T")
BodyFor = Callable[[ModelConfig], Json]
# Told of upstream calls that ran (and were billed) but whose answer is thrown away: the siblings
# of a failed fan-out, which a retry draws again.
OnDiscarded = Callable[[ModelConfig, Json], None]


def allowed_chain(config: GatewayConfig, model: ModelConfig, allows: Callable[[str], bool]) -> list[ModelConfig]:
    """The model and its fallbacks of the same mode that the caller may use."""
    return [m for m in fallback_chain(config, model) if allows(m.name) and m.mode == model.mode]


def malformed(what: str) -> UpstreamError:
    return UpstreamError("server_error", f"the upstream answered with a malformed {what}")


def checked_completion(response: object) -> Json:
    """A chat completion with a list of choice objects, or an upstream error: nothing downstream
    has to guard against another shape."""
    if not isinstance(response, dict):
        raise malformed("chat completion")
    choices = response.get("choices")
    if not isinstance(choices, list) or not all(isinstance(c, dict) and isinstance(c.get("message", {}), dict) for c in choices):
        raise malformed("chat completion")
    return response


class UpstreamCalls:
    """Configured models as one tenant (or an offline job) may call them."""

    def __init__(self, config: GatewayConfig, upstreams: Upstreams, *, allows: Callable[[str], bool] = lambda _name: True,
                 metrics: Metrics | None = None) -> None:
        self.config = config
        self.upstreams = upstreams
        self.allows = allows
        self.metrics = metrics

    def on_error(self, model: ModelConfig, error: UpstreamError) -> None:
        if self.metrics is not None:
            self.metrics.upstream_errors.labels(model.name, error.kind).inc()
        log.warning("upstream %s failed (%s): %s", model.name, error.kind, error.message)

    def chain(self, model: ModelConfig) -> list[ModelConfig]:
        return allowed_chain(self.config, model, self.allows)

    async def attempt(self, chain: list[ModelConfig], call: Callable[[ModelConfig], Awaitable[T]]) -> tuple[T, ModelConfig]:
        return await call_with_fallbacks(chain, call, self.on_error)

    async def complete(self, chain: list[ModelConfig], body_for: BodyFor, n: int = 1,
                       on_discarded: OnDiscarded | None = None) -> tuple[Json, ModelConfig]:
        """One chat completion with `n` choices: native `n` where the upstream has it, else `n`
        parallel single calls merged into one response."""

        async def once(model: ModelConfig) -> Json:
            if n > 1 and not model.native_n:
                return await self._fan_out(model, body_for, n, on_discarded)
            return checked_completion(await self.upstreams.complete(model, body_for(model)))

        return await self.attempt(chain, once)

    async def _fan_out(self, model: ModelConfig, body_for: BodyFor, n: int, on_discarded: OnDiscarded | None) -> Json:
        single = {k: v for k, v in body_for(model).items() if k != "n"}

        async def one() -> Json:
            return checked_completion(await self.upstreams.complete(model, single))

        results = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
        answers = [r for r in results if not isinstance(r, BaseException)]
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            if on_discarded is not None:
                for answer in answers:
                    on_discarded(model, answer)
            raise failure
        merged = dict(answers[0])
        merged["choices"] = []
        prompt = completion = 0
        for index, response in enumerate(answers):
            choice = dict(response["choices"][0]) if response["choices"] else {"message": {"role": "assistant", "content": ""}}
            choice["index"] = index
            merged["choices"].append(choice)
            p, c = usage_of(response)
            prompt += p  # every parallel call is billed its own prompt
            completion += c
        merged["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        return merged

    async def open_stream(self, chain: list[ModelConfig], body_for: BodyFor) -> tuple[AsyncIterator[Json], Json | None, ModelConfig]:
        """A stream whose first chunk has arrived: a failure before it can still fall back."""

        async def opened(model: ModelConfig) -> tuple[AsyncIterator[Json], Json | None]:
            return await opened_at_first_event(self.upstreams.stream(model, body_for(model)))

        (iterator, first), used = await self.attempt(chain, opened)
        return iterator, first, used

    async def embed(self, chain: list[ModelConfig], payload: Json) -> tuple[Json, ModelConfig]:
        async def once(model: ModelConfig) -> Json:
            response = await self.upstreams.embed(model, payload)
            if not isinstance(response, dict):
                raise malformed("embeddings response")
            return response

        return await self.attempt(chain, once)
