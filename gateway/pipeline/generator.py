"""The two interfaces `strategies/` asks for, over the gateway: a Generator that calls configured
models through `UpstreamCalls` and records every call on the request's account, and a Budget
backed by that account's ledger holds."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

from strategies import CallRecord, Completion

from gateway.accounting import INPUT_MARGIN, Account, count_prompt_tokens, output_cap, worst_case_usd
from gateway.config import ModelConfig
from gateway.errors import model_not_found
from gateway.ledger import Hold
from gateway.pipeline.calls import UpstreamCalls, checked_completion
from gateway.tokens import count_text_tokens
from gateway.upstream import Json, UpstreamError, reported_usage


def split_tokens(total: int, weights: list[int]) -> list[int]:
    """Share `total` in proportion to `weights`; the rounding remainder goes to the first."""
    if not weights:
        return []
    weight_sum = sum(weights)
    if weight_sum == 0:
        base = [total // len(weights)] * len(weights)
    else:
        base = [total * w // weight_sum for w in weights]
    base[0] += total - sum(base)
    return base


class GatewayGenerator:
    """strategies.Generator over configured models: the ones a tenant may use, or all of them
    for an offline job (no account then: nothing is charged)."""

    def __init__(self, calls: UpstreamCalls, default_model: ModelConfig, account: Account | None = None) -> None:
        self.calls = calls
        self.default_model = default_model
        self.account = account

    def model(self, name: str | None) -> ModelConfig:
        if name is None:
            return self.default_model
        model = self.calls.config.model(name)
        if model is None or not self.calls.allows(name) or model.mode != "chat":
            raise model_not_found(name)
        return model

    def supports_n(self, model: str | None = None) -> bool:
        return self.model(model).native_n

    def estimate_cost(self, messages: list[dict[str, Any]], n: int, *, max_tokens: int | None, model: str | None = None,
                      extra_prompt_tokens: int = 0) -> float:
        primary = self.model(model)
        prompt_tokens = count_prompt_tokens(primary, messages) + extra_prompt_tokens
        return max(worst_case_usd(m, prompt_tokens, n, output_cap(m, max_tokens)) for m in self.calls.chain(primary))

    def worst_case_call(self, model: ModelConfig, messages: list[dict[str, Any]], n: int, max_tokens: int | None,
                        role: str) -> CallRecord:
        cost = self.estimate_cost(messages, n, max_tokens=max_tokens, model=model.name)
        prompt = math.ceil(count_prompt_tokens(model, messages) * INPUT_MARGIN)
        return CallRecord(model.name, role, prompt, n * output_cap(model, max_tokens), cost)

    async def generate(self, messages: list[dict[str, Any]], n: int, *, model: str | None = None, role: str = "sample",
                       **params: Any) -> list[Completion]:
        primary = self.model(model)
        clean = {k: v for k, v in params.items() if v is not None}

        def body(m: ModelConfig) -> Json:
            out: Json = {**clean, "messages": messages, "max_tokens": output_cap(m, clean.get("max_tokens"))}
            if n > 1:
                out["n"] = n
            return out

        async def once(m: ModelConfig) -> Json:
            return checked_completion(await self.calls.upstreams.complete(m, body(m)))

        try:
            response, used = await self.calls.attempt(self.calls.chain(primary), once)
        except asyncio.CancelledError:
            # Cut off mid-call: the strategy's Meter charges the call's worst case; record it so
            # that metrics and the token count see the same.
            if self.account is not None:
                self.account.add(self.worst_case_call(primary, messages, n, clean.get("max_tokens"), role))
            raise
        choices = sorted(response.get("choices") or [], key=lambda c: c.get("index", 0) if isinstance(c.get("index"), int) else 0)
        texts = [str((c.get("message") or {}).get("content") or "") for c in choices]
        counted = [count_text_tokens(used.litellm_params.model, t) for t in texts]
        prompt_tokens, completion_total = reported_usage(response) or (count_prompt_tokens(used, messages), sum(counted))
        # The upstream reports one total, so each choice gets a share in proportion to its length;
        # the prompt is billed once, on the first choice.
        shares = split_tokens(completion_total, counted)
        completions = []
        for index, (choice, text) in enumerate(zip(choices, texts)):
            p = prompt_tokens if index == 0 else 0
            completions.append(Completion(text=text, model=used.name, prompt_tokens=p, completion_tokens=shares[index],
                                          cost_usd=used.price.cost_usd(p, shares[index]), finish_reason=choice.get("finish_reason"),
                                          ref=response.get("id")))
        if len(completions) != n:
            raise UpstreamError("server_error", f"asked for {n} choices, got {len(completions)}")
        if self.account is not None:
            for completion in completions:
                self.account.record(used, role, completion.prompt_tokens, completion.completion_tokens)
        return completions


class AccountBudget:
    """strategies.Budget over the tenant's ledger account.

    The strategies' Meter never settles a hold above its amount; when an upstream reports more
    usage than its estimate allowed, the calls recorded while the hold was open are what the
    provider billed, and that is what the ledger is charged (the overage is logged there), as
    on the plain path. The Meter keeps one hold open at a time, so those calls are the ones
    recorded between the hold's reserve and its settle.
    """

    def __init__(self, account: Account) -> None:
        self.account = account
        self._cost_at_reserve: dict[str, float] = {}

    async def reserve(self, amount_usd: float) -> Hold | None:
        hold = await self.account.try_reserve(amount_usd)
        if hold is not None:
            self._cost_at_reserve[hold.reservation_id] = self.account.total_cost_usd
        return hold

    async def settle(self, hold: Hold, actual_usd: float) -> None:
        recorded = self.account.total_cost_usd - self._cost_at_reserve.pop(hold.reservation_id, self.account.total_cost_usd)
        await self.account.settle(hold, max(actual_usd, recorded))

    async def release(self, hold: Hold) -> None:
        self._cost_at_reserve.pop(hold.reservation_id, None)
        await self.account.release(hold)

    def watch(self, hold: Hold, interrupted_cost: Callable[[], float]) -> None:
        # A shutdown drain charges this, instead of releasing calls the upstream already ran.
        self.account.price_partial(hold, interrupted_cost)

    async def remaining_usd(self) -> float | None:
        return await self.account.remaining_usd()
