"""`cascade`: answer with the cheap model; pay for the strong one only when that answer looks wrong.

The cheap model (`cheap_model`, else the routed model) answers first. The
escalation model (:mod:`strategies.escalation`, fitted on that model's recorded
answers) reads the answer, and the router's prior for the prompt when the
routed model is the cheap one, and predicts P(answer right). Below
`escalate_below` the strong model (`strong_model`) answers instead, and the
client gets its answer; both calls are billed. Each call is reserved on its
own, so a budget that fits only the cheap call still gets an answer (flagged
`degraded`), and so does one whose escalation call fails. The decision is in
`ttc.cascade` of the response. The router's prior is read only by escalation
models fitted with priors (`fit_escalation(priors=...)`; the CLI fits without).
"""

from __future__ import annotations

from contracts.prompts import prompt_text

from .base import Message, StrategyError, StrategyInfo, StrategyResult
from .common import finish, insufficient
from .context import RunContext
from .votes import answer_key


async def run_cascade(messages: list[Message], ctx: RunContext) -> StrategyResult:
    spec, escalation = ctx.spec, ctx.escalation
    if escalation is None:
        raise StrategyError("strategy 'cascade' needs an escalation model: set strategies.escalation in the gateway "
                            "config to a file written by `ttc strategies fit-escalation`")
    first = spec.cheap_model or ctx.model
    strong = spec.strong_model
    if strong is None or strong == first:
        raise StrategyError("strategy 'cascade' needs ttc.strong_model, different from the model that answers first")
    if not await ctx.meter.reserve(ctx.estimate(messages, 1, model=first)):
        raise await insufficient(ctx, messages, first)
    [draft] = await ctx.meter.generate(messages, 1, model=first, role="draft", **ctx.call_params())
    # The router's difficulty is the routed model's P(success): a prior only when that model answered.
    prior = ctx.difficulty if spec.cheap_model is None or spec.cheap_model == ctx.model else None
    p_right = escalation.p_right(prompt_text(messages), draft.text, prior)
    decision = {"first_model": draft.model, "p_right": round(p_right, 4), "escalate_below": spec.escalate_below,
                "escalation_fitted_on": escalation.model, "escalated": False}
    chosen, reason, degraded = draft, f"cascade: kept {draft.model}'s answer (P(right) {p_right:.2f})", False
    if draft.model == strong:  # `auto` routed the prompt to the strong model itself: nothing to escalate to
        reason = f"cascade: {strong} answered first; nothing stronger to escalate to"
    elif p_right < spec.escalate_below:
        await ctx.meter.close()  # settle the draft before reserving the escalation
        if await ctx.meter.reserve(ctx.estimate(messages, 1, model=strong)):
            try:
                [chosen] = await ctx.meter.generate(messages, 1, model=strong, role="escalation", **ctx.call_params())
            except Exception as error:  # noqa: BLE001 - the draft is paid for and is an answer: keep it rather than fail
                reason = f"cascade: escalation to {strong} failed ({type(error).__name__}); kept {draft.model}'s answer"
                degraded = True
            else:
                decision["escalated"] = True
                reason = f"cascade: {draft.model}'s answer looked wrong (P(right) {p_right:.2f}), escalated to {strong}"
        else:
            reason, degraded = f"cascade: {draft.model}'s answer looked wrong but the budget does not fit {strong}", True
    return await finish(
        ctx, text=chosen.text, info=StrategyInfo("cascade", len(ctx.meter.calls), degraded=degraded, reason=reason),
        chosen=chosen, answer=answer_key(chosen, spec.extractor), report={"cascade": decision},
    )
