"""Pricing and budget holds for upstream calls: worst-case estimates before, true cost after."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.auth import TenantPrincipal
from gateway.config import BudgetWindowConfig, ModelConfig, TenantConfig
from gateway.errors import GatewayError, ledger_unavailable
from gateway.inflight import InFlight, PartialCost
from gateway.ledger import BudgetExceeded, BudgetScope, Hold, Ledger, LedgerUnavailable, RateLimitExceeded, WindowLimit
from strategies.base import CallRecord  # one record type for ttc.calls, plain calls and strategies alike

log = logging.getLogger("ttc.accounting")

INPUT_MARGIN = 1.10  # litellm's tokenizer can disagree with the upstream's; reserve 10% extra


def count_prompt_tokens(model: ModelConfig, messages: list[dict[str, Any]]) -> int:
    if model.is_local:
        from gateway.local_models import registry

        extra = model.litellm_params.model_extra or {}
        local = registry.get(model.litellm_params.model.split("/", 1)[1], model_path=extra.get("model_path"), parallel=int(extra.get("parallel", 1)))
        return local.count_prompt_tokens(messages)
    from gateway.tokens import count_message_tokens

    return count_message_tokens(model.litellm_params.model, messages)


def output_cap(model: ModelConfig, requested: int | None) -> int:
    """What the gateway sends upstream as max_tokens, so generation cannot outrun the hold."""
    return min(requested, model.max_output_tokens) if requested else model.max_output_tokens


def worst_case_usd(model: ModelConfig, prompt_tokens: int, n: int, max_tokens: int) -> float:
    reserved_input = math.ceil(prompt_tokens * INPUT_MARGIN)
    return model.price.cost_usd(reserved_input, n * max_tokens)


def _limits(windows: Sequence[BudgetWindowConfig]) -> tuple[WindowLimit, ...]:
    return tuple(WindowLimit(window=w.window, limit_usd=w.limit_usd) for w in windows)


def budget_scope(tenant: TenantConfig, key_id: str | None) -> BudgetScope:
    key_windows: tuple[WindowLimit, ...] = ()
    if key_id:
        for key in tenant.api_keys:
            if key.hash.split(":", 1)[1].startswith(key_id):
                key_windows = _limits(key.budgets)
    return BudgetScope(
        tenant_id=tenant.id,
        windows=_limits(tenant.budgets),
        max_cost_per_request_usd=tenant.max_cost_per_request_usd,
        key_id=key_id if key_windows else None,
        key_windows=key_windows,
    )


def budget_error(error: BudgetExceeded) -> GatewayError:
    # x-should-retry: the OpenAI SDK retries 429s on its own; an empty budget will not refill in ms.
    return GatewayError(429, str(error), type="insufficient_quota", code="insufficient_quota", headers={"x-should-retry": "false"})


def rate_error(error: RateLimitExceeded) -> GatewayError:
    retry_after = max(1, math.ceil(error.retry_after_s))
    return GatewayError(
        429,
        str(error),
        type="rate_limit_error",
        code="rate_limit_exceeded",
        # No x-should-retry: a rate limit clears within the window, and a coding agent (Claude Code)
        # that is told not to retry ends its whole session instead of waiting `retry-after`.
        headers={"retry-after": str(retry_after)},
    )


@dataclass
class Account:
    """The ledger as one request sees it: its scope, its holds and its calls."""

    ledger: Ledger
    principal: TenantPrincipal
    scope: BudgetScope
    inflight: InFlight | None = None
    calls: list[CallRecord] = field(default_factory=list)
    # Holds not yet settled or released, each with how to price what it consumed so far.
    open_holds: dict[str, tuple[Hold, PartialCost | None]] = field(default_factory=dict)

    @classmethod
    def for_principal(cls, ledger: Ledger, principal: TenantPrincipal, inflight: InFlight | None = None) -> Account:
        return cls(ledger=ledger, principal=principal, scope=budget_scope(principal.tenant, principal.key_id), inflight=inflight)

    def __hash__(self) -> int:
        return id(self)

    def _opened(self, hold: Hold) -> Hold:
        self.open_holds[hold.reservation_id] = (hold, None)
        if self.inflight is not None:
            self.inflight.add(self)
        return hold

    def _closed(self, hold: Hold) -> None:
        self.open_holds.pop(hold.reservation_id, None)
        if not self.open_holds and self.inflight is not None:
            self.inflight.discard(self)

    def price_partial(self, hold: Hold, partial_cost: PartialCost) -> None:
        """How to charge this hold if the process must stop before the request finishes."""
        if hold.reservation_id in self.open_holds:
            self.open_holds[hold.reservation_id] = (hold, partial_cost)

    async def close_open_holds(self) -> None:
        for hold, partial_cost in list(self.open_holds.values()):
            if partial_cost is None:
                await self.release(hold)
            else:
                await self.settle(hold, partial_cost())

    @property
    def tenant(self) -> TenantConfig:
        return self.principal.tenant

    async def admit(self, estimated_tokens: int) -> None:
        limits = self.tenant.rate_limits
        if limits.rpm is None and limits.tpm is None:
            return
        try:
            await self.ledger.admit_request(self.tenant.id, rpm=limits.rpm, tpm=limits.tpm, estimated_tokens=estimated_tokens)
        except RateLimitExceeded as error:
            raise rate_error(error) from None
        except LedgerUnavailable:
            raise ledger_unavailable() from None

    async def true_up_tokens(self, estimated_tokens: int, actual_tokens: int) -> None:
        if self.tenant.rate_limits.tpm is None:
            return
        try:
            await self.ledger.record_tokens(
                self.tenant.id, tpm=self.tenant.rate_limits.tpm, tokens=actual_tokens, estimated_tokens=estimated_tokens
            )
        except LedgerUnavailable:
            log.warning("could not true up TPM for tenant %s: ledger unavailable", self.tenant.id)

    async def _reserve(self, amount_usd: float) -> Hold:
        try:
            return await self.ledger.reserve(self.scope, amount_usd)
        except BudgetExceeded:
            pending = self.inflight.pending_settlements(self.tenant.id) if self.inflight is not None else []
            if not pending:
                raise
        # Answers already sent by this process hold their worst case until their settlement
        # lands a moment later; a refusal must not come from that lag, so wait and ask again.
        await asyncio.wait(pending)
        return await self.ledger.reserve(self.scope, amount_usd)

    async def reserve(self, amount_usd: float) -> Hold:
        try:
            return self._opened(await self._reserve(amount_usd))
        except BudgetExceeded as error:
            raise budget_error(error) from None
        except LedgerUnavailable:
            raise ledger_unavailable() from None

    async def try_reserve(self, amount_usd: float) -> Hold | None:
        """Like reserve, but a budget that does not fit answers None instead of raising."""
        try:
            return self._opened(await self._reserve(amount_usd))
        except BudgetExceeded:
            return None
        except LedgerUnavailable:
            raise ledger_unavailable() from None

    def record(self, model: ModelConfig, role: str, prompt_tokens: int, completion_tokens: int) -> CallRecord:
        return self.add(CallRecord(model.name, role, prompt_tokens, completion_tokens,
                                   model.price.cost_usd(prompt_tokens, completion_tokens)))

    def add(self, call: CallRecord) -> CallRecord:
        self.calls.append(call)
        return call

    async def settle(self, hold: Hold, actual_usd: float) -> None:
        if hold.reservation_id not in self.open_holds:
            return  # already settled (e.g. drained at shutdown): never charge twice
        self._closed(hold)
        try:
            await self.ledger.settle(hold, actual_usd)
        except LedgerUnavailable:
            # The gateway's ledger spools a settle the store cannot take (spooled.py), so this
            # means even the spool failed: the hold expires and is charged its worst case (or,
            # with `expired_holds: refund`, returned). Say so loudly.
            log.error("could not settle %.6f USD for tenant %s: ledger unavailable", actual_usd, hold.tenant_id)

    async def release(self, hold: Hold) -> None:
        if hold.reservation_id not in self.open_holds:
            return
        self._closed(hold)
        try:
            await self.ledger.release(hold)
        except LedgerUnavailable:  # not even spooled (see settle): it expires by TTL
            log.warning("could not release hold %s: ledger unavailable; it expires by TTL", hold.reservation_id)

    async def remaining_usd(self) -> float | None:
        """Remaining money in the tightest window (tenant or key), read from the ledger."""
        try:
            return await self.ledger.remaining_usd(self.scope)
        except LedgerUnavailable:
            return None

    @staticmethod
    def remaining_after_settle(hold: Hold, actual_usd: float) -> float | None:
        """The tightest window's remaining money after settling `hold`, without a round trip."""
        if hold.remaining_after_usd is None:
            return None
        return max(0.0, hold.remaining_after_usd + hold.amount_usd - actual_usd)

    @property
    def total_cost_usd(self) -> float:
        return sum(call.cost_usd for call in self.calls)

    @property
    def total_tokens(self) -> int:
        return sum(call.prompt_tokens + call.completion_tokens for call in self.calls)

    def usage(self) -> dict[str, int]:
        prompt = sum(call.prompt_tokens for call in self.calls)
        completion = sum(call.completion_tokens for call in self.calls)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
