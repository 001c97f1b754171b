"""Helpers shared by the strategy implementations."""

from __future__ import annotations

from typing import Any

from .base import Completion, InsufficientBudget, Message, StrategyInfo, StrategyResult
from .context import RunContext

BUDGET_MESSAGE = "budget ran out mid-strategy: returning the best answer found so far"


async def insufficient(ctx: RunContext, messages: list[Message], model: str | None) -> InsufficientBudget:
    """The 429 error: not even one single call fits."""
    return InsufficientBudget(ctx.estimate(messages, 1, model=model), await ctx.meter.available_usd())


async def finish(
    ctx: RunContext,
    *,
    text: str,
    info: StrategyInfo,
    chosen: Completion | None = None,
    answer: str | None = None,
    exhausted: bool = False,
    meta: dict[str, Any] | None = None,
    report: dict[str, Any] | None = None,
) -> StrategyResult:
    """Settle the ledger first (releasing any unused reservation), then
    announce the final answer, then build the result."""
    await ctx.meter.close()
    await ctx.meter.emit_final(text, strategy=info.name)
    return StrategyResult(
        text=text,
        calls=tuple(ctx.meter.calls),
        strategy=info,
        chosen=chosen,
        answer=answer,
        budget_exhausted=exhausted,
        budget_message=BUDGET_MESSAGE if exhausted else None,
        finish_reason=chosen.finish_reason if chosen is not None else "stop",
        reserved_usd=ctx.meter.reserved_total,
        unreserved_cost_usd=ctx.meter.unreserved_cost_usd,
        meta=meta or {},
        report=report or {},
    )
