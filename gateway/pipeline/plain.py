"""The plain executor: one upstream call (with retries and fallbacks) under one hold."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from typing import Any

from strategies import CallRecord

from gateway.accounting import INPUT_MARGIN, output_cap
from gateway.config import ModelConfig
from gateway.errors import GatewayError
from gateway.pipeline.answer_parts import ToolCall, answer_parts, chat_tool_calls, tool_calls_of
from gateway.pipeline.calls import malformed
from gateway.pipeline.context import RequestContext
from gateway.pipeline.metered import MeteredCall
from gateway.pipeline.plan import RequestPlan
from gateway.pipeline.relay import close_quietly, relayed
from gateway.pipeline.respond import Answer
from gateway.tokens import count_text_tokens
from gateway.upstream import Json, UpstreamError, reported_usage

log = logging.getLogger("ttc.plain")


def _text_of_choices(response: Json) -> str:
    parts = []
    for choice in response.get("choices") or []:
        message = choice.get("message") or {}
        parts.append(str(message.get("content") or ""))
        for call in message.get("tool_calls") or []:
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                parts.append(str(call["function"].get("arguments") or ""))
    return "".join(parts)


def worst_case_call(plan: RequestPlan) -> CallRecord:
    """The reservation as a call record: what is charged if the call's real usage is unknowable."""
    model = max(plan.chain, key=lambda m: m.price.cost_usd(plan.billed_prompt_tokens(m), plan.n * output_cap(m, plan.params.get("max_tokens"))))
    prompt = math.ceil(plan.billed_prompt_tokens(model) * INPUT_MARGIN)
    completion = plan.n * output_cap(model, plan.params.get("max_tokens"))
    return CallRecord(model.name, "answer", prompt, completion, plan.worst_case_usd())


class PlainExecutor:
    def __init__(self, ctx: RequestContext, plan: RequestPlan) -> None:
        self.ctx = ctx
        self.plan = plan

    def _discarded(self, model: ModelConfig, response: Json) -> None:
        usage = reported_usage(response)
        if usage is None:
            usage = (self.plan.prompt_tokens, count_text_tokens(model.litellm_params.model, _text_of_choices(response)))
        self.ctx.account.record(model, "discarded", *usage)

    async def complete(self) -> Answer:
        ctx, plan = self.ctx, self.plan
        metered = await MeteredCall.reserve(ctx.account, worst_case_call(plan))
        metered.price_interruption(lambda: metered.hold.amount_usd)
        response, used = await metered.call(lambda: ctx.calls.complete(plan.chain, plan.body_for, plan.n, self._discarded),
                                            plan.model.name)
        usage = reported_usage(response)
        if usage is None:
            usage = (plan.billed_prompt_tokens(used), count_text_tokens(used.litellm_params.model, _text_of_choices(response)))
        metered.record(used, "answer", *usage)
        parts = answer_parts(response)
        ctx.response_text, ctx.response_tool_calls = parts.text, chat_tool_calls(parts.tool_calls)
        cost = ctx.account.total_cost_usd
        metered.price_interruption(lambda: cost)  # a drain before the settlement charges the true cost
        return Answer(body=response, served_model=used.name, remaining_usd=metered.remaining_after_settle(),
                      strategy=plan.strategy_info, settle=metered.settle)

    async def open_stream(self) -> PlainStream:
        ctx, plan = self.ctx, self.plan
        metered = await MeteredCall.reserve(ctx.account, worst_case_call(plan))
        iterator, first, used = await metered.call(lambda: ctx.calls.open_stream(plan.chain, plan.body_for), plan.model.name)
        return PlainStream(ctx, plan, metered, iterator, first, used)


class PlainStream:
    """Relays the upstream's chunks; charges the usage chunk, or the streamed text when there is
    none, it is nonsense, or the client left first."""

    native = False

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
        self._generated: list[str] = []  # text and tool-call arguments: what the upstream is paid for
        self._text: list[str] = []
        self._tool_calls: list[ToolCall] = []
        self._usage: tuple[int, int] | None = None
        self._completed = False
        self._closed = False
        metered.price_interruption(self._generated_cost)

    def _generated_cost(self) -> float:
        return self.used.price.cost_usd(self.plan.prompt_tokens, count_text_tokens(self.used.litellm_params.model, "".join(self._generated)))

    def _read(self, chunk: object) -> Json:
        """Take what a chunk says about usage and text; refuse any chunk not shaped like one."""
        if not isinstance(chunk, dict):
            raise malformed("stream chunk")
        if chunk.get("usage"):
            self._usage = reported_usage(chunk)
        choices = chunk.get("choices") or []
        if not isinstance(choices, list):
            raise malformed("stream chunk")
        for choice in choices:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if not isinstance(delta, dict):
                raise malformed("stream chunk")
            content = delta.get("content")
            if content:
                if not isinstance(content, str):
                    raise malformed("stream chunk")
                self._generated.append(content)
                self._text.append(content)
            calls = delta.get("tool_calls")
            if calls:
                if not isinstance(calls, list) or not all(isinstance(call, dict) for call in calls):
                    raise malformed("stream chunk")
                pieces = tool_calls_of(calls)
                self._tool_calls += pieces
                self._generated += [piece.arguments for piece in pieces]
        return chunk

    async def chunks(self) -> AsyncIterator[Json | None]:
        try:
            async for event in relayed(self.first, self.iterator):
                chunk = self._read(event)
                choices = chunk.get("choices") or []
                if choices:
                    chunk.pop("usage", None)
                    chunk["model"] = self.used.name
                    if any(choice.get("finish_reason") for choice in choices):
                        if self.final is not None:
                            yield self.final
                        self.final = chunk
                    else:
                        yield chunk
            self._completed = True
        except UpstreamError as error:
            self.ctx.calls.on_error(self.used, error)
            self.failure = error.to_gateway_error(self.used.name)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await close_quietly(self.iterator)
        try:
            counted = count_text_tokens(self.used.litellm_params.model, "".join(self._generated))
            if self._usage is not None and self._completed:
                prompt_tokens, completion_tokens = self._usage
            else:
                prompt_tokens = self._usage[0] if self._usage else self.plan.prompt_tokens
                completion_tokens = max(self._usage[1] if self._usage else 0, counted)
            self.metered.record(self.used, "answer", prompt_tokens, completion_tokens)
        except Exception:  # what ran is unknown: charge the reservation, never nothing
            log.exception("could not price the stream from %s; charging its worst case", self.used.name)
            self.ctx.account.add(self.metered.worst_case)
        self.ctx.response_text = "".join(self._text)
        self.ctx.response_tool_calls = chat_tool_calls(self._tool_calls)
        cost = self.ctx.account.total_cost_usd
        self.metered.price_interruption(lambda: cost)
