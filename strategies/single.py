"""`single`: one call to the routed model, exactly what the client asked for."""

from __future__ import annotations

from .base import Message, StrategyInfo, StrategyResult
from .common import finish, insufficient
from .context import RunContext
from .votes import answer_key


async def run_single(
    messages: list[Message], ctx: RunContext, *, model: str | None = None, reason: str | None = None,
    degraded: bool = False,
) -> StrategyResult:
    model = model if model is not None else ctx.model
    if not await ctx.meter.reserve(ctx.estimate(messages, 1, model=model)):
        raise await insufficient(ctx, messages, model)
    [completion] = await ctx.meter.generate(messages, 1, model=model, role="sample", **ctx.call_params())
    return await finish(
        ctx,
        text=completion.text,
        info=StrategyInfo("single", 1, degraded=degraded, reason=reason),
        chosen=completion,
        answer=answer_key(completion, ctx.spec.extractor),
    )
