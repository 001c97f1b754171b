"""The plan step: everything one request will do, decided before any money is reserved.

The router runs here, once. Its prediction for the chosen model is the strategy layer's
difficulty, so a routed strategy request never asks the router a second time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from contracts.prompts import prompt_text
from strategies import DifficultyFn, StrategyInfo, TTCSpec, forced_single_reason

from gateway.accounting import count_prompt_tokens, output_cap, worst_case_usd
from gateway.auth import TenantPrincipal
from gateway.config import ModelConfig
from gateway.errors import GatewayError
from gateway.pipeline.calls import allowed_chain
from gateway.pipeline.strategy_plan import requested_strategy, strategy_spec
from gateway.routing import AUTO, RouteChoice, named_model, route
from gateway.schemas import ChatCompletionRequest
from gateway.state import GatewayState
from gateway.tokens import count_message_tokens
from gateway.upstream import Json

if TYPE_CHECKING:
    from router import Router


@dataclass
class StrategyPlan:
    """A test-time-compute strategy to run, with what the router knows of the prompt: the routed
    model's predicted quality, or (for a named model) how to predict it."""

    spec: TTCSpec
    difficulty: float | None
    difficulty_fn: DifficultyFn | None

    async def prompt_difficulty(self, messages: list[dict[str, Any]]) -> float | None:
        if self.difficulty is None and self.difficulty_fn is not None:
            self.difficulty = await self.difficulty_fn(prompt_text(messages))
        return self.difficulty


@dataclass
class RequestPlan:
    model: ModelConfig
    chain: list[ModelConfig]
    messages: list[dict[str, Any]]
    prompt_tokens: int
    n: int
    params: dict[str, Any]
    stream: bool
    include_usage: bool
    router_info: dict[str, Any] | None = None
    strategy: StrategyPlan | None = None
    # `ttc.strategy` of a request that asked for a strategy but runs as one plain call.
    strategy_info: StrategyInfo | None = None

    def body_for(self, model: ModelConfig, n: int | None = None) -> Json:
        body: Json = {**self.params, "messages": self.messages, "max_tokens": output_cap(model, self.params.get("max_tokens"))}
        n = self.n if n is None else n
        if n != 1:
            body["n"] = n
        return body

    def worst_case_usd(self) -> float:
        return max(worst_case_usd(m, self.billed_prompt_tokens(m), self.n, output_cap(m, self.params.get("max_tokens")))
                   for m in self.chain)

    def billed_prompt_tokens(self, model: ModelConfig) -> int:
        # Without native `n`, each of the n parallel calls is billed the prompt.
        return self.prompt_tokens * (self.n if self.n > 1 and not model.native_n else 1)

    @property
    def strategy_name(self) -> str | None:
        """What ran, for metrics and the log: the strategy, or `single` for one forced to a plain call."""
        if self.strategy is not None:
            return self.strategy.spec.strategy
        return self.strategy_info.name if self.strategy_info is not None else None

    def estimated_tokens(self) -> int:
        """What the rate limiter counts at admission; trued up to every call's tokens afterwards."""
        return self.prompt_tokens + self.n * output_cap(self.model, self.params.get("max_tokens"))


def difficulty_fn_for(router: Router, model_name: str) -> DifficultyFn:
    """strategies.DifficultyFn over the router, for sub-problems the strategy writes itself; off
    the event loop, since featurizing is CPU work."""

    async def difficulty(text: str) -> float | None:
        return float(await asyncio.to_thread(router.difficulty, text, model_name))

    return difficulty


def _strategy_plan(state: GatewayState, spec: TTCSpec, model: ModelConfig, routed: RouteChoice | None) -> StrategyPlan:
    router = state.router
    name = model.router_name or model.name
    if router is None or name not in router.models:
        return StrategyPlan(spec, None, None)
    # A named model's difficulty is predicted by the executor, after admission, so that a refused
    # request costs no featurizing.
    return StrategyPlan(spec, routed.predicted_quality if routed is not None else None, difficulty_fn_for(router, name))


async def plan_chat(state: GatewayState, principal: TenantPrincipal, request: ChatCompletionRequest) -> RequestPlan:
    tenant = principal.tenant
    messages = request.message_dicts()
    params = request.passthrough()
    if request.requested_max_tokens is not None:
        params["max_tokens"] = request.requested_max_tokens
    routed: RouteChoice | None = None
    if request.model == AUTO or request.model.startswith(AUTO + ":"):
        # The router compares candidates on one common count; the reservation then uses the
        # chosen model's own tokenizer and prompt format.
        routed = await route(state, tenant, request, messages, count_message_tokens("openai/auto", messages))
        model = routed.model
        state.metrics.router_decisions.labels(tenant.id, model.name).inc()
    else:
        model = named_model(state, tenant, request.model)
    prompt_tokens = count_prompt_tokens(model, messages)
    if request.tools and model.is_local:
        raise GatewayError(400, f"Model '{model.name}' does not support tools.", code="unsupported_parameter", param="tools")
    chain = allowed_chain(state.config, model, tenant.allows)
    plan = RequestPlan(model=model, chain=chain, messages=messages, prompt_tokens=prompt_tokens, n=request.n,
                       params=params, stream=request.stream,
                       include_usage=bool(request.stream_options and request.stream_options.include_usage),
                       router_info=routed.info if routed else None)
    name = requested_strategy(principal, request)
    if name is None:
        return plan
    reason = forced_single_reason(tools=request.tools, n=request.n)
    if reason is not None:
        # Tools or n>1: one plain call, which streams straight through, with the reason on record.
        plan.strategy_info = StrategyInfo("single", 1, degraded=False, reason=reason)
        return plan
    spec = strategy_spec(state, tenant, request, name, model)
    plan.strategy = _strategy_plan(state, spec, model, routed)
    return plan
