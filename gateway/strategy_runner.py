"""Runs a test-time-compute strategy for one request, over the gateway's upstreams and ledger.

`strategies/` is pure async code over two interfaces; this module supplies real ones: a
Generator that calls configured models (with retries, fallbacks and our prices) and a Budget
backed by the tenant's ledger account.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.responses import Response, StreamingResponse

from gateway.accounting import Account, budget_error, count_prompt_tokens, output_cap, worst_case_usd
from gateway.chat import SSE_DONE, ChatRun, sse
from gateway.config import GatewayConfig, ModelConfig
from gateway.errors import GatewayError, invalid_request, model_not_found, sse_error_event
from gateway.ledger import BudgetExceeded, Hold
from gateway.routing import prompt_text
from gateway.schemas import ChatCompletionRequest
from gateway.tokens import count_text_tokens
from gateway.upstream import Upstreams, UpstreamError, call_with_fallbacks, fallback_chain, usage_of

log = logging.getLogger("ttc.strategy")

KEEPALIVE = b": keep-alive\n\n"
KEEPALIVE_EVERY_S = 5.0
# Request keys of the `ttc` object that belong to routing, not to the strategy spec.
ROUTING_KEYS = ("cost_weight", "tolerance")


class GatewayGenerator:
    """strategies.Generator over configured models: the ones a tenant may use, or all of them offline."""

    def __init__(self, config: GatewayConfig, upstreams: Upstreams, default_model: ModelConfig,
                 allows: Callable[[str], bool] = lambda _name: True,
                 on_error: Callable[[ModelConfig, UpstreamError], None] = lambda _m, _e: None) -> None:
        self.config = config
        self.upstreams = upstreams
        self.default_model = default_model
        self.allows = allows
        self.on_error = on_error

    @classmethod
    def for_run(cls, run: ChatRun) -> GatewayGenerator:
        tenant = run.account.tenant
        return cls(run.state.config, run.state.upstreams, run.plan.model, tenant.allows, run._on_error)

    def model(self, name: str | None) -> ModelConfig:
        if name is None:
            return self.default_model
        model = self.config.model(name)
        if model is None or not self.allows(name) or model.mode != "chat":
            raise model_not_found(name)
        return model

    def chain(self, model: ModelConfig) -> list[ModelConfig]:
        return [m for m in fallback_chain(self.config, model) if self.allows(m.name)]

    def supports_n(self, model: str | None = None) -> bool:
        return self.model(model).native_n

    def estimate_cost(self, messages: list[dict[str, Any]], n: int, *, max_tokens: int | None, model: str | None = None,
                      extra_prompt_tokens: int = 0) -> float:
        primary = self.model(model)
        prompt_tokens = count_prompt_tokens(primary, messages) + extra_prompt_tokens
        return max(worst_case_usd(m, prompt_tokens, n, output_cap(m, max_tokens)) for m in self.chain(primary))

    async def generate(self, messages: list[dict[str, Any]], n: int, *, model: str | None = None, role: str = "sample", **params: Any) -> list[Any]:
        from strategies import Completion

        primary = self.model(model)
        clean = {k: v for k, v in params.items() if v is not None}

        def body(m: ModelConfig) -> dict[str, Any]:
            out = {**clean, "messages": messages, "max_tokens": output_cap(m, clean.get("max_tokens"))}
            if n > 1:
                out["n"] = n
            return out

        response, used = await call_with_fallbacks(self.chain(primary), lambda m: self.upstreams.complete(m, body(m)), self.on_error)
        choices = sorted(response.get("choices") or [], key=lambda c: c.get("index", 0))
        texts = [str((c.get("message") or {}).get("content") or "") for c in choices]
        prompt_tokens, completion_total = usage_of(response)
        counted = [count_text_tokens(used.litellm_params.model, t) for t in texts]
        if not response.get("usage"):
            prompt_tokens, completion_total = count_prompt_tokens(used, messages), sum(counted)
        # Per-choice completion tokens: the upstream reports one total, so split it in proportion
        # to each text's length; the prompt is billed once, on the first choice.
        shares = _split(completion_total, counted)
        completions = []
        for index, (choice, text) in enumerate(zip(choices, texts)):
            p = prompt_tokens if index == 0 else 0
            completions.append(Completion(text=text, model=used.name, prompt_tokens=p, completion_tokens=shares[index],
                                          cost_usd=used.price.cost_usd(p, shares[index]), finish_reason=choice.get("finish_reason"),
                                          ref=response.get("id")))
        if len(completions) != n:
            raise UpstreamError("server_error", f"asked for {n} choices, got {len(completions)}")
        return completions


def difficulty_fn_for(router: Any, model_name: str) -> Callable[[str], Awaitable[float | None]]:
    """strategies.DifficultyFn over the router: async, and off the event loop (featurizing is CPU work)."""

    async def difficulty(text: str) -> float | None:
        return float(await asyncio.to_thread(router.difficulty, text, model_name))

    return difficulty


def _split(total: int, weights: list[int]) -> list[int]:
    if not weights:
        return []
    weight_sum = sum(weights)
    if weight_sum == 0:
        base = [total // len(weights)] * len(weights)
    else:
        base = [total * w // weight_sum for w in weights]
    base[0] += total - sum(base)
    return base


class AccountBudget:
    """strategies.Budget over the tenant's ledger account."""

    def __init__(self, account: Account) -> None:
        self.account = account

    async def reserve(self, amount_usd: float) -> Hold | None:
        return await self.account.try_reserve(amount_usd)

    async def settle(self, hold: Hold, actual_usd: float) -> None:
        await self.account.settle(hold, actual_usd)

    async def release(self, hold: Hold) -> None:
        await self.account.release(hold)

    def watch(self, hold: Hold, interrupted_cost: Callable[[], float]) -> None:
        # A shutdown drain charges this, instead of releasing calls the upstream already ran.
        self.account.price_partial(hold, interrupted_cost)

    async def remaining_usd(self) -> float | None:
        return await self.account.remaining_usd()


def strategy_spec(run: ChatRun, request: ChatCompletionRequest, name: str) -> Any:
    from strategies import TTCSpecError, parse_spec

    tenant = run.account.tenant
    defaults = {k: v for k, v in tenant.strategy.model_dump(exclude_none=True).items()}
    global_reward = run.state.config.strategies.reward_model
    if global_reward is not None:
        defaults.setdefault("reward_model", global_reward)
    requested = request.ttc.model_dump(exclude_none=True) if request.ttc else {}
    for key in ROUTING_KEYS:
        requested.pop(key, None)
    requested["strategy"] = name
    caps = [c for c in (requested.get("max_cost_per_request_usd"), tenant.max_cost_per_request_usd) if c is not None]
    if caps:
        requested["max_cost_per_request_usd"] = min(caps)
    try:
        spec = parse_spec(requested, defaults)
    except TTCSpecError as error:
        raise invalid_request(str(error), param="ttc") from None
    if spec.selector == "reward":
        _check_reward_model(run, spec.reward_model)
    if spec.strategy == "cascade":
        _check_cascade(run, spec)
    return spec


def _check_cascade(run: ChatRun, spec: Any) -> None:
    """Refuse a cascade before its draft is paid for when it could only fail, or would grade
    answers of a model its escalation model never saw."""
    escalation = run.state.escalation_model
    if escalation is None:
        raise invalid_request("strategy 'cascade' needs an escalation model: set strategies.escalation in the config "
                              "to a file written by `ttc strategies fit-escalation`", param="ttc")
    if spec.strong_model is None:
        raise invalid_request("strategy 'cascade' needs ttc.strong_model, the model to escalate to",
                              param="ttc.strong_model")
    generator = GatewayGenerator.for_run(run)
    strong = generator.model(spec.strong_model)  # unknown, not allowed or not chat: 404 model_not_found
    first = generator.model(spec.cheap_model) if spec.cheap_model else run.plan.model
    if escalation.model not in {first.name, first.router_name}:
        raise invalid_request(f"the escalation model was fitted on answers of {escalation.model!r}, but {first.name!r} "
                              f"would answer first: set ttc.cheap_model to {escalation.model!r}, or fit one for "
                              f"{first.name!r}", param="ttc.cheap_model")
    if strong.name == first.name:
        raise invalid_request("ttc.strong_model must differ from the model that answers first", param="ttc.strong_model")


def _check_reward_model(run: ChatRun, name: str | None) -> None:
    """Refuse `selector: reward` before any sample is paid for, not after.

    Gateway models attach no scores of their own, so without a reward model the
    selector could only fail once the candidates were drawn.
    """
    if name is None:
        raise invalid_request("selector 'reward' needs a reward model: set strategies.reward_model or the "
                              "tenant's strategy.reward_model in the config", param="ttc")
    GatewayGenerator.for_run(run).model(name)  # unknown, not allowed or not chat: 404 model_not_found


async def run_strategy(run: ChatRun, request: ChatCompletionRequest, name: str) -> Response:
    from strategies import forced_single_reason

    reason = forced_single_reason(tools=request.tools, n=request.n)
    tenant_id = run.tenant_id
    if reason is not None:
        # Tools or n>1: the plain path, which streams straight through, with the reason on record.
        run.plan.strategy_info = {"name": "single", "n": 1, "degraded": False, "reason": reason}
        run.state.metrics.strategy_requests.labels(tenant_id, "single").inc()
        if request.stream:
            return await run.stream(bool(request.stream_options and request.stream_options.include_usage))
        return await run.complete()
    spec = strategy_spec(run, request, name)
    run.state.metrics.strategy_requests.labels(tenant_id, spec.strategy).inc()
    execution = StrategyExecution(run, request, spec)
    if request.stream:
        return await execution.stream()
    return await execution.complete()


class StrategyExecution:
    def __init__(self, run: ChatRun, request: ChatCompletionRequest, spec: Any) -> None:
        self.run = run
        self.request = request
        self.spec = spec
        self.generator = GatewayGenerator.for_run(run)
        self.progress: asyncio.Queue[Any] = asyncio.Queue()

    async def _difficulty(self) -> tuple[float | None, Any]:
        router = self.run.state.router
        model = self.run.plan.model
        name = model.router_name or model.name
        if router is None or name not in getattr(router, "models", ()):
            return None, None
        prompt = prompt_text(self.run.plan.messages)
        difficulty = await asyncio.to_thread(router.difficulty, prompt, name)
        return float(difficulty), difficulty_fn_for(router, name)

    async def _on_progress(self, event: Any) -> None:
        self.progress.put_nowait(event)

    async def _execute(self) -> Any:
        from strategies import run_strategy as run_named

        difficulty, difficulty_fn = await self._difficulty()
        params = dict(self.run.plan.params)
        params.pop("n", None)
        policy = self.run.state.strategy_policy
        return await run_named(
            self.run.plan.messages, self.spec, generator=self.generator, budget=AccountBudget(self.run.account),
            model=None, difficulty=difficulty, params=params, difficulty_fn=difficulty_fn, policy=policy,
            escalation=self.run.state.escalation_model, progress=self._on_progress,
        )

    def _map_error(self, error: BaseException) -> GatewayError:
        from strategies import InsufficientBudget, StrategyError, TTCSpecError

        if isinstance(error, GatewayError):
            return error
        if isinstance(error, InsufficientBudget):
            return budget_error(BudgetExceeded(window="request", scope="request", limit_usd=error.available_usd,
                                               remaining_usd=error.available_usd, requested_usd=error.needed_usd))
        if isinstance(error, (StrategyError, TTCSpecError)):
            return invalid_request(str(error), param="ttc")
        if isinstance(error, UpstreamError):
            return error.to_gateway_error(self.run.plan.model.name)
        raise error

    def _ttc(self, result: Any) -> dict[str, Any]:
        ttc = result.ttc_dict()
        ttc["router"] = self.run.plan.router_info
        ttc["cost_usd"] = round(float(ttc["cost_usd"]), 8)
        return ttc

    def _observe(self, result: Any, status: str) -> None:
        metrics = self.run.state.metrics
        for call in result.calls:
            metrics.observe_call(self.run.tenant_id, call.model, call.prompt_tokens, call.completion_tokens, call.cost_usd)
        metrics.observe_request(self.run.tenant_id, self.run.plan.model.name, status, time.perf_counter() - self.run.plan.started)

    def _response_body(self, result: Any) -> dict[str, Any]:
        usage = result.usage.as_dict()
        return {
            "id": f"chatcmpl-ttc-{int(time.time() * 1000)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.run.plan.model.name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text}, "finish_reason": result.finish_reason or "stop"}],
            "usage": usage,
            "ttc": self._ttc(result),
        }

    async def _headers(self, result: Any) -> dict[str, str]:
        headers = {"x-ttc-cost-usd": f"{result.cost_usd:.8f}", "x-ttc-model": self.run.plan.model.name, "x-ttc-strategy": result.strategy.name}
        remaining = await self.run.account.remaining_usd()
        if remaining is not None:
            headers["x-ttc-budget-remaining-usd"] = f"{remaining:.6f}"
        if result.budget_exhausted:
            headers["x-ttc-budget-exhausted"] = "true"
        return headers

    async def complete(self) -> Response:
        try:
            result = await self._execute()
        except BaseException as error:
            mapped = self._map_error(error)
            self.run.fail(self.run.plan.model.name, mapped)
            raise mapped from None
        self._observe(result, "200")
        return Response(orjson.dumps(self._response_body(result)), media_type="application/json", headers=await self._headers(result))

    async def stream(self) -> Response:
        task = asyncio.create_task(self._execute())
        # Headers wait for the first sign of life: a budget or spec error before any call is
        # still a proper HTTP error, not a 200 stream that fails.
        getter = asyncio.ensure_future(self.progress.get())
        done, _ = await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
        if task in done and task.exception() is not None:
            getter.cancel()
            mapped = self._map_error(task.exception())  # type: ignore[arg-type]
            self.run.fail(self.run.plan.model.name, mapped)
            raise mapped
        if getter not in done:
            getter.cancel()
        include_usage = bool(self.request.stream_options and self.request.stream_options.include_usage)
        return StreamingResponse(self._relay(task, include_usage), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache", "x-accel-buffering": "no", "x-ttc-model": self.run.plan.model.name})

    async def _relay(self, task: asyncio.Task[Any], include_usage: bool) -> AsyncIterator[bytes]:
        try:
            while not task.done():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), timeout=KEEPALIVE_EVERY_S)
                if not task.done():
                    yield KEEPALIVE  # internal progress is never streamed as the answer
            error = task.exception()
            if error is not None:
                mapped = self._map_error(error)
                self.run.fail(self.run.plan.model.name, mapped)
                yield sse_error_event(mapped)
                return
            result = task.result()
            self._observe(result, "200")
            body = self._response_body(result)
            base = {"id": body["id"], "object": "chat.completion.chunk", "created": body["created"], "model": body["model"]}
            yield sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
            for piece in _pieces(result.text):
                yield sse({**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
            final = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": result.finish_reason or "stop"}]}
            if include_usage:
                yield sse(final)
                yield sse({**base, "choices": [], "usage": body["usage"], "ttc": body["ttc"]})
            else:
                yield sse({**final, "ttc": body["ttc"]})
            yield SSE_DONE
        finally:
            if not task.done():
                # The client left: stop the strategy; its own cleanup settles what was spent.
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task


def _pieces(text: str, size: int = 32) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]
