"""The native executor: a request in an API the chosen upstream speaks itself is sent to it as the
client sent it, instead of through the chat form, under the same hold, retries, fallbacks and
record as a plain call. The dialect knows the API (`NativeRoute`); this module knows the hold."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

from gateway.config import ModelConfig
from gateway.errors import GatewayError
from gateway.pipeline.context import RequestContext
from gateway.pipeline.metered import MeteredCall
from gateway.pipeline.plain import worst_case_call
from gateway.pipeline.plan import RequestPlan
from gateway.pipeline.relay import close_quietly, opened_at_first_event, relayed
from gateway.pipeline.respond import Answer
from gateway.tokens import count_text_tokens
from gateway.upstream import Json, UpstreamError

log = logging.getLogger("ttc.native")


class NativeRoute(Protocol):
    """One client API spoken natively by some upstreams, for one request."""

    def serves(self, model: ModelConfig) -> bool:
        """Whether `model`'s upstream speaks the API itself."""
        ...

    async def complete(self, model: ModelConfig) -> Json: ...

    def stream(self, model: ModelConfig) -> AsyncIterator[Json]: ...

    def usage(self, payload: Json) -> tuple[int | None, int | None]:
        """(input, output) tokens an answer or a stream event reports; None where it says nothing."""
        ...

    def text(self, payload: Json) -> str:
        """The generated text an answer or stream event carries (for the log, and to count when no usage came)."""
        ...

    def closing(self, event: Json) -> bool:
        """An event the dialect writes itself at the end (with the cost): not relayed as it comes."""
        ...


def natively_served(route: NativeRoute, plan: RequestPlan) -> bool:
    """Only a plain answer, and only when every model the plan may fall back to speaks the API."""
    return plan.strategy is None and plan.n == 1 and all(route.serves(m) for m in plan.chain)


class NativeExecutor:
    def __init__(self, ctx: RequestContext, plan: RequestPlan, route: NativeRoute) -> None:
        self.ctx = ctx
        self.plan = plan
        self.route = route

    def _tokens(self, model: ModelConfig, reported: tuple[int | None, int | None], text: str) -> tuple[int, int]:
        prompt, completion = reported
        return (prompt if prompt is not None else self.plan.billed_prompt_tokens(model),
                completion if completion is not None else count_text_tokens(model.litellm_params.model, text))

    async def complete(self) -> Answer:
        ctx, plan, route = self.ctx, self.plan, self.route
        metered = await MeteredCall.reserve(ctx.account, worst_case_call(plan))
        metered.price_interruption(lambda: metered.hold.amount_usd)
        response, used = await metered.call(lambda: ctx.calls.attempt(plan.chain, route.complete), plan.model.name)
        ctx.response_text = route.text(response)
        metered.record(used, "answer", *self._tokens(used, route.usage(response), ctx.response_text))
        cost = ctx.account.total_cost_usd
        metered.price_interruption(lambda: cost)
        return Answer(body=response, served_model=used.name, remaining_usd=metered.remaining_after_settle(),
                      settle=metered.settle, native=True)

    async def open_stream(self) -> NativeStream:
        ctx, plan, route = self.ctx, self.plan, self.route
        metered = await MeteredCall.reserve(ctx.account, worst_case_call(plan))

        async def opened(model: ModelConfig) -> tuple[AsyncIterator[Json], Json | None]:
            return await opened_at_first_event(route.stream(model))

        (iterator, first), used = await metered.call(lambda: ctx.calls.attempt(plan.chain, opened), plan.model.name)
        return NativeStream(self, metered, iterator, first, used)


class NativeStream:
    """Relays the upstream's own events; holds back the closing ones, which the dialect writes with the cost."""

    native = True
    strategy = None

    def __init__(self, executor: NativeExecutor, metered: MeteredCall, iterator: AsyncIterator[Json], first: Json | None,
                 used: ModelConfig) -> None:
        self.executor = executor
        self.ctx = executor.ctx
        self.route = executor.route
        self.metered = metered
        self.iterator = iterator
        self.first = first
        self.used = used
        self.served_model = used.name
        self.report: dict[str, Any] = {}
        self.final: Json | None = None
        self.failure: GatewayError | None = None
        self.settle = metered.settle
        self._text: list[str] = []
        self._input: int | None = None
        self._output: int | None = None
        self._completed = False
        self._closed = False
        metered.price_interruption(self._generated_cost)

    def _generated_cost(self) -> float:
        prompt, completion = self.executor._tokens(self.used, (self._input, None), "".join(self._text))
        return self.used.price.cost_usd(prompt, max(completion, self._output or 0))

    def _read(self, event: Json) -> None:
        found_in, found_out = self.route.usage(event)
        self._input = max(self._input or 0, found_in) if found_in is not None else self._input
        self._output = max(self._output or 0, found_out) if found_out is not None else self._output
        self._text.append(self.route.text(event))

    async def chunks(self) -> AsyncIterator[Json | None]:
        try:
            async for event in relayed(self.first, self.iterator):
                self._read(event)
                if self.route.closing(event):
                    if event.get("usage") is not None:
                        self.final = event
                else:
                    yield event
            self._completed = True
        except UpstreamError as error:
            self.ctx.calls.on_error(self.used, error)
            self.failure = error.to_gateway_error(self.used.name)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await close_quietly(self.iterator)
        text = "".join(self._text)
        prompt, counted = self.executor._tokens(self.used, (self._input, None), text)
        # The reported count once the upstream finished; cut short, whatever was seen, whichever is more.
        completion = self._output if self._completed and self._output is not None else max(counted, self._output or 0)
        self.metered.record(self.used, "answer", prompt, completion)
        self.ctx.response_text = text
        cost = self.ctx.account.total_cost_usd
        self.metered.price_interruption(lambda: cost)
