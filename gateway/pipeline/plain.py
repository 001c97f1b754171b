"""The plain executor: one upstream call (with retries and fallbacks) under one hold."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from gateway.config import ModelConfig
from gateway.errors import GatewayError
from gateway.pipeline.context import RequestContext
from gateway.pipeline.metered import MeteredCall
from gateway.pipeline.plan import RequestPlan
from gateway.pipeline.respond import Answer
from gateway.tokens import count_text_tokens
from gateway.upstream import Json, UpstreamError, usage_of

log = logging.getLogger("ttc.plain")


def _text_of_choices(response: Json) -> str:
    parts = []
    for choice in response.get("choices") or []:
        message = choice.get("message") or {}
        parts.append(str(message.get("content") or ""))
        for call in message.get("tool_calls") or []:
            parts.append(str((call.get("function") or {}).get("arguments") or ""))
    return "".join(parts)


class PlainExecutor:
    def __init__(self, ctx: RequestContext, plan: RequestPlan) -> None:
        self.ctx = ctx
        self.plan = plan

    async def complete(self) -> Answer:
        ctx, plan = self.ctx, self.plan
        metered = await MeteredCall.reserve(ctx.account, plan.worst_case_usd())
        metered.price_interruption(lambda: metered.hold.amount_usd)
        response, used = await metered.call(lambda: ctx.calls.complete(plan.chain, plan.body_for, plan.n), plan.model.name)
        prompt_tokens, completion_tokens = usage_of(response)
        if not response.get("usage"):
            prompt_tokens = plan.prompt_tokens
            completion_tokens = count_text_tokens(used.litellm_params.model, _text_of_choices(response))
        metered.record(used, "answer", prompt_tokens, completion_tokens)
        cost = ctx.account.total_cost_usd
        metered.price_interruption(lambda: cost)  # a drain before the settlement charges the true cost
        return Answer(body=response, served_model=used.name, remaining_usd=metered.remaining_after_settle(),
                      strategy=plan.strategy_info, settle=metered.settle)

    async def open_stream(self) -> PlainStream:
        ctx, plan = self.ctx, self.plan
        metered = await MeteredCall.reserve(ctx.account, plan.worst_case_usd())
        iterator, first, used = await metered.call(lambda: ctx.calls.open_stream(plan.chain, plan.body_for), plan.model.name)
        return PlainStream(ctx, plan, metered, iterator, first, used)


class PlainStream:
    """Relays the upstream's chunks; charges the usage chunk, or the streamed text when there is
    none or the client left first."""

    def __init__(self, ctx: RequestContext, plan: RequestPlan, metered: MeteredCall, iterator: AsyncIterator[Json],
                 first: Json | None, used: ModelConfig) -> None:
        self.ctx = ctx
        self.plan = plan
        self.metered = metered
        self.iterator = iterator
        self.first = first
        self.used = used
        self.served_model = used.name
        self.strategy = plan.strategy_info
        self.report: dict[str, Any] = {}
        self.final: Json | None = None
        self.failure: GatewayError | None = None
        self.settle = metered.settle
        self._generated: list[str] = []
        self._usage: Json | None = None
        self._completed = False
        self._closed = False
        metered.price_interruption(lambda: used.price.cost_usd(
            plan.prompt_tokens, count_text_tokens(used.litellm_params.model, "".join(self._generated))))

    async def chunks(self) -> AsyncIterator[Json | None]:
        chunk = self.first
        try:
            while chunk is not None:
                if chunk.get("usage"):
                    self._usage = chunk["usage"]
                choices = chunk.get("choices") or []
                if choices:
                    chunk.pop("usage", None)
                    chunk["model"] = self.used.name
                    for choice in choices:
                        delta = choice.get("delta") or {}
                        if delta.get("content"):
                            self._generated.append(delta["content"])
                        for call in delta.get("tool_calls") or []:
                            self._generated.append(str((call.get("function") or {}).get("arguments") or ""))
                    if any(choice.get("finish_reason") for choice in choices):
                        if self.final is not None:
                            yield self.final
                        self.final = chunk
                    else:
                        yield chunk
                try:
                    chunk = await self.iterator.__anext__()
                except StopAsyncIteration:
                    chunk = None
            self._completed = True
        except UpstreamError as error:
            self.ctx.calls.on_error(self.used, error)
            self.failure = error.to_gateway_error(self.used.name)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        aclose = getattr(self.iterator, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception:  # closing a broken upstream stream must not block settlement
                log.debug("closing upstream stream failed", exc_info=True)
        usage = self._usage
        if usage and self._completed:
            prompt_tokens, completion_tokens = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        else:
            prompt_tokens = int((usage or {}).get("prompt_tokens") or self.plan.prompt_tokens)
            completion_tokens = max(int((usage or {}).get("completion_tokens") or 0),
                                    count_text_tokens(self.used.litellm_params.model, "".join(self._generated)))
        self.metered.record(self.used, "answer", prompt_tokens, completion_tokens)
        cost = self.ctx.account.total_cost_usd
        self.metered.price_interruption(lambda: cost)
