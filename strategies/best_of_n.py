"""`best_of_n`: N samples in parallel, one selector picks the answer.

Worst case reserved up front: N samples, plus the judge call for `judge` or
the N grading calls of a `reward` model. If that does not fit the budget or
the per-request cap, N shrinks until it does (`degraded: true`); N=1 is a
plain single call.
"""

from __future__ import annotations

from .base import Completion, Message, StrategyInfo, StrategyResult
from .common import finish, insufficient
from .context import RunContext
from .selectors import Selection, select, selection_cost


def worst_case(ctx: RunContext, messages: list[Message], n: int, selector: str, model: str | None) -> float:
    return ctx.estimate(messages, n, model=model) + selection_cost(ctx, messages, n, selector)


async def sample_and_select(
    messages: list[Message], ctx: RunContext, k: int, selector: str, *, model: str | None, role: str = "sample",
    max_tokens: int | None = None,
) -> tuple[Completion, Selection]:
    """Draw k samples and select one, inside an already open reservation."""
    completions = await ctx.meter.generate(
        messages, k, model=model, role=role, **ctx.call_params(sampling=True, max_tokens=max_tokens)
    )
    picked = await select(selector, messages, completions, ctx)
    return completions[picked.index], picked


async def run_best_of_n(
    messages: list[Message], ctx: RunContext, *, n: int | None = None, selector: str | None = None,
    model: str | None = None, role: str = "sample",
) -> StrategyResult:
    n = n if n is not None else ctx.spec.max_n(4)
    selector = selector or ctx.spec.selector
    model = model if model is not None else ctx.model
    k = await ctx.meter.reserve_largest(lambda k: worst_case(ctx, messages, k, selector, model), n)
    if k is None:
        raise await insufficient(ctx, messages, model)
    chosen, picked = await sample_and_select(messages, ctx, k, selector, model=model, role=role)
    info = StrategyInfo(
        "best_of_n", k, degraded=k < n, reason=f"budget fits n={k} of {n}" if k < n else None
    )
    return await finish(
        ctx, text=chosen.text, info=info, chosen=chosen, answer=picked.answer,
        meta={"selector": picked.method, **picked.detail},
    )
