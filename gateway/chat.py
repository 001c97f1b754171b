"""The chat-completions pipeline: admit, reserve, call (with retries/fallbacks), settle, respond."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
from starlette.responses import Response, StreamingResponse

from gateway.accounting import Account, count_prompt_tokens, output_cap, worst_case_usd
from gateway.auth import Principal
from gateway.config import ModelConfig
from gateway.errors import GatewayError, sse_error_event
from gateway.ledger import Hold
from gateway.routing import AUTO, named_model, route
from gateway.schemas import ChatCompletionRequest
from gateway.state import GatewayState
from gateway.tokens import count_message_tokens, count_text_tokens
from gateway.upstream import Json, UpstreamError, call_with_fallbacks, fallback_chain, usage_of

log = logging.getLogger("ttc.chat")

SSE_DONE = b"data: [DONE]\n\n"


def sse(payload: Json) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


@dataclass
class ChatPlan:
    """What one request will do, decided before any money is reserved."""

    model: ModelConfig
    chain: list[ModelConfig]
    messages: list[dict[str, Any]]
    prompt_tokens: int
    n: int
    params: dict[str, Any]
    router_info: dict[str, Any] | None = None
    strategy_info: dict[str, Any] | None = None
    started: float = field(default_factory=time.perf_counter)

    def body_for(self, model: ModelConfig, n: int | None = None) -> Json:
        body: Json = {**self.params, "messages": self.messages, "max_tokens": output_cap(model, self.params.get("max_tokens"))}
        n = self.n if n is None else n
        if n != 1:
            body["n"] = n
        return body

    def worst_case_usd(self) -> float:
        return max(worst_case_usd(m, self.prompt_tokens, self.n, output_cap(m, self.params.get("max_tokens"))) for m in self.chain)

    def estimated_tokens(self) -> int:
        return self.prompt_tokens + self.n * output_cap(self.model, self.params.get("max_tokens"))


async def plan_chat(state: GatewayState, principal: Principal, request: ChatCompletionRequest) -> ChatPlan:
    assert principal.tenant is not None
    tenant = principal.tenant
    messages = request.message_dicts()
    params = request.passthrough()
    if request.requested_max_tokens is not None:
        params["max_tokens"] = request.requested_max_tokens
    router_info: dict[str, Any] | None = None
    if request.model == AUTO or request.model.startswith(AUTO + ":"):
        # The router compares candidates on one common count; the reservation then uses the
        # chosen model's own tokenizer and prompt format.
        model, router_info = await route(state, tenant, request, messages, count_message_tokens("openai/auto", messages))
        state.metrics.router_decisions.labels(tenant.id, model.name).inc()
    else:
        model = named_model(state, tenant, request.model)
    prompt_tokens = count_prompt_tokens(model, messages)
    if request.tools and model.is_local:
        raise GatewayError(400, f"Model '{model.name}' does not support tools.", code="unsupported_parameter", param="tools")
    chain = [m for m in fallback_chain(state.config, model) if tenant.allows(m.name)]
    return ChatPlan(model=model, chain=chain, messages=messages, prompt_tokens=prompt_tokens, n=request.n, params=params, router_info=router_info)


def ttc_object(plan: ChatPlan, account: Account) -> Json:
    return {
        "router": plan.router_info,
        "strategy": plan.strategy_info,
        "calls": [{**call.as_dict(), "cost_usd": round(call.cost_usd, 8)} for call in account.calls],
        "cost_usd": round(account.total_cost_usd, 8),
    }


async def _fan_out(state: GatewayState, model: ModelConfig, plan: ChatPlan) -> Json:
    """`n` parallel single calls for upstreams without native `n` (local, Ollama-style)."""
    responses = await asyncio.gather(*(state.upstreams.complete(model, plan.body_for(model, n=1)) for _ in range(plan.n)))
    merged = dict(responses[0])
    merged["choices"] = []
    prompt = completion = 0
    for index, response in enumerate(responses):
        choice = dict(response["choices"][0])
        choice["index"] = index
        merged["choices"].append(choice)
        p, c = usage_of(response)
        prompt = max(prompt, p)  # the same prompt each time: an upstream with native n bills it once too
        completion += c
    merged["usage"] = {"prompt_tokens": prompt * plan.n, "completion_tokens": completion, "total_tokens": prompt * plan.n + completion}
    return merged


def _text_of_choices(response: Json) -> str:
    parts = []
    for choice in response.get("choices") or []:
        message = choice.get("message") or {}
        parts.append(str(message.get("content") or ""))
        for call in message.get("tool_calls") or []:
            parts.append(str((call.get("function") or {}).get("arguments") or ""))
    return "".join(parts)


class ChatRun:
    """One request's execution with its account; used by the plain and the strategy paths."""

    def __init__(self, state: GatewayState, principal: Principal, plan: ChatPlan) -> None:
        self.state = state
        self.plan = plan
        self.account = Account.for_principal(state.ledger, principal, state.inflight)
        self.tenant_id = principal.tenant.id if principal.tenant else "-"

    def _on_error(self, model: ModelConfig, error: UpstreamError) -> None:
        self.state.metrics.upstream_errors.labels(model.name, error.kind).inc()
        log.warning("upstream %s failed (%s): %s", model.name, error.kind, error.message)

    def _finish_metrics(self, model_name: str, status: str, duration_s: float | None = None) -> None:
        metrics = self.state.metrics
        if duration_s is None:
            duration_s = time.perf_counter() - self.plan.started
        metrics.observe_request(self.tenant_id, model_name, status, duration_s)
        for call in self.account.calls:
            metrics.observe_call(self.tenant_id, call.model, call.prompt_tokens, call.completion_tokens, call.cost_usd)

    def fail(self, model_name: str, error: GatewayError) -> GatewayError:
        self._finish_metrics(model_name, str(error.status))
        return error

    def headers(self, hold: Hold) -> dict[str, str]:
        headers = {"x-ttc-cost-usd": f"{self.account.total_cost_usd:.8f}", "x-ttc-model": self.plan.model.name}
        remaining = self.account.remaining_after_settle(hold, self.account.total_cost_usd)
        if remaining is not None:
            headers["x-ttc-budget-remaining-usd"] = f"{remaining:.6f}"
        if self.plan.router_info:
            headers["x-ttc-router-model"] = self.plan.router_info["model"]
            headers["x-ttc-router-version"] = str(self.plan.router_info["version"])
        return headers

    async def complete(self) -> Response:
        plan, state = self.plan, self.state
        estimated = plan.estimated_tokens()
        try:
            await self.account.admit(estimated)
            hold = await self.account.reserve(plan.worst_case_usd())
        except GatewayError as error:
            raise self.fail(plan.model.name, error) from None
        self.account.price_partial(hold, lambda: hold.amount_usd)  # a drain before the answer: see CancelledError below

        async def attempt(model: ModelConfig) -> Json:
            if plan.n > 1 and not model.native_n:
                return await _fan_out(state, model, plan)
            return await state.upstreams.complete(model, plan.body_for(model))

        try:
            response, used = await call_with_fallbacks(plan.chain, attempt, self._on_error)
        except UpstreamError as error:
            await self.account.release(hold)
            raise self.fail(plan.model.name, error.to_gateway_error(plan.model.name)) from None
        except asyncio.CancelledError:
            # Cut off mid-call (a shutdown past its grace period): the upstream has the request and
            # bills it, how far it got is unknown, so the reservation's worst case is charged.
            await self.account.settle(hold, hold.amount_usd)
            raise
        except BaseException:
            await self.account.release(hold)
            raise
        prompt_tokens, completion_tokens = usage_of(response)
        if not response.get("usage"):
            prompt_tokens = plan.prompt_tokens
            completion_tokens = count_text_tokens(used.litellm_params.model, _text_of_choices(response))
        self.account.record(used, "answer", prompt_tokens, completion_tokens)
        self._settle_after_response(hold, estimated, prompt_tokens + completion_tokens, used.name, "200")
        response["model"] = used.name
        response["usage"] = self.account.usage()
        response["ttc"] = ttc_object(plan, self.account)
        return Response(orjson.dumps(response), media_type="application/json", headers=self.headers(hold))

    def _settle_after_response(self, hold: Hold, estimated_tokens: int, actual_tokens: int, model_name: str, status: str) -> None:
        """Settle and record metrics in the background: the answer and its price are known, so
        the client need not wait for the ledger's second round trip. A shutdown drain charges the
        same amount if it runs first, and the settlement then finds the hold closed (never
        charged twice). Readers in this process (usage, /metrics) wait for pending settlements."""
        cost = self.account.total_cost_usd
        duration_s = time.perf_counter() - self.plan.started
        self.account.price_partial(hold, lambda: cost)

        async def settle() -> None:
            self._finish_metrics(model_name, status, duration_s)
            await self.account.settle(hold, cost)
            await self.account.true_up_tokens(estimated_tokens, actual_tokens)

        self.state.inflight.spawn_settlement(self.tenant_id, settle())

    async def stream(self, include_usage: bool) -> Response:
        plan, state = self.plan, self.state
        estimated = plan.estimated_tokens()
        try:
            await self.account.admit(estimated)
            hold = await self.account.reserve(plan.worst_case_usd())
        except GatewayError as error:
            raise self.fail(plan.model.name, error) from None

        async def open_stream(model: ModelConfig) -> tuple[AsyncIterator[Json], Json | None]:
            iterator = state.upstreams.stream(model, plan.body_for(model)).__aiter__()
            try:
                first: Json | None = await iterator.__anext__()
            except StopAsyncIteration:
                first = None
            return iterator, first

        try:
            (iterator, first), used = await call_with_fallbacks(plan.chain, open_stream, self._on_error)
        except UpstreamError as error:
            await self.account.release(hold)
            raise self.fail(plan.model.name, error.to_gateway_error(plan.model.name)) from None
        except BaseException:
            await self.account.release(hold)
            raise
        return StreamingResponse(
            self._relay(iterator, first, used, hold, include_usage, estimated),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no", "x-ttc-model": used.name},
        )

    async def _relay(self, iterator: AsyncIterator[Json], first: Json | None, used: ModelConfig, hold: Hold,
                     include_usage: bool, estimated: int) -> AsyncIterator[bytes]:
        generated: list[str] = []
        usage: Json | None = None
        self.account.price_partial(hold, lambda: used.price.cost_usd(
            self.plan.prompt_tokens, count_text_tokens(used.litellm_params.model, "".join(generated))))
        held_back: Json | None = None
        completed = False
        failure: GatewayError | None = None
        try:
            chunk = first
            while chunk is not None:
                if chunk.get("usage"):
                    usage = chunk["usage"]
                choices = chunk.get("choices") or []
                if choices:
                    chunk.pop("usage", None)
                    chunk["model"] = used.name
                    for choice in choices:
                        delta = choice.get("delta") or {}
                        if delta.get("content"):
                            generated.append(delta["content"])
                        for call in delta.get("tool_calls") or []:
                            generated.append(str((call.get("function") or {}).get("arguments") or ""))
                    # The finishing chunk waits until usage is known: the cost rides on it.
                    if any(choice.get("finish_reason") for choice in choices):
                        if held_back is not None:
                            yield sse(held_back)
                        held_back = chunk
                    else:
                        yield sse(chunk)
                try:
                    chunk = await iterator.__anext__()
                except StopAsyncIteration:
                    chunk = None
            completed = True
        except UpstreamError as error:
            self._on_error(used, error)
            failure = error.to_gateway_error(used.name)
        finally:
            # Runs on normal end, upstream failure and client disconnect alike; the shield keeps
            # a cancelled (disconnected) request from skipping its settlement.
            with anyio.CancelScope(shield=True):
                await self._settle_stream(iterator, used, hold, usage, "".join(generated), estimated, completed)
        if failure is not None:
            yield sse_error_event(failure)
            return
        final = held_back or {"id": (first or {}).get("id", "chatcmpl-ttc"), "object": "chat.completion.chunk",
                              "created": int(time.time()), "model": used.name, "choices": []}
        ttc = ttc_object(self.plan, self.account)
        if include_usage:
            yield sse(final)
            yield sse({"id": final.get("id"), "object": "chat.completion.chunk", "created": final.get("created"),
                       "model": used.name, "choices": [], "usage": self.account.usage(), "ttc": ttc})
        else:
            final["ttc"] = ttc
            yield sse(final)
        yield SSE_DONE

    async def _settle_stream(self, iterator: AsyncIterator[Json], used: ModelConfig, hold: Hold, usage: Json | None,
                             text: str, estimated: int, completed: bool) -> None:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception:  # closing a broken upstream stream must not block settlement
                log.debug("closing upstream stream failed", exc_info=True)
        if usage and completed:
            prompt_tokens, completion_tokens = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        else:
            # No usage chunk (the upstream sent none, or the client left first): charge what was generated.
            prompt_tokens = int((usage or {}).get("prompt_tokens") or self.plan.prompt_tokens)
            completion_tokens = max(int((usage or {}).get("completion_tokens") or 0), count_text_tokens(used.litellm_params.model, text))
        self.account.record(used, "answer", prompt_tokens, completion_tokens)
        self._settle_after_response(hold, estimated, prompt_tokens + completion_tokens, used.name, "200" if completed else "499")


async def chat_completion(state: GatewayState, principal: Principal, request: ChatCompletionRequest) -> Response:
    plan = await plan_chat(state, principal, request)
    run = ChatRun(state, principal, plan)
    strategy = requested_strategy(principal, request)
    if strategy is not None:
        from gateway.strategy_runner import run_strategy

        return await run_strategy(run, request, strategy)
    if request.stream:
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        return await run.stream(include_usage)
    return await run.complete()


def requested_strategy(principal: Principal, request: ChatCompletionRequest) -> str | None:
    """The test-time-compute strategy to run, or None for a plain call."""
    name = request.ttc.strategy if request.ttc and request.ttc.strategy else None
    if name is None and principal.tenant is not None:
        name = principal.tenant.strategy.strategy
    if name in (None, "single", "none"):
        return None
    return name
