"""`refine`: draft, then up to R rounds of critique -> revise.

It stops as soon as a critique accepts the current answer; the reservation for
the rounds it did not run is released at that moment. Each round may use its
own models (`round_models[r] = {"critique": ..., "revise": ...}`), e.g. a cheap
draft and a strong critique. The worst case (draft + R critiques + R revisions,
with drafts and critiques spliced into later prompts) is reserved up front;
if it does not fit, R shrinks (`degraded: true`), down to the draft alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from contracts.prompts import prompt_text

from .base import Completion, Message, StrategyInfo, StrategyResult
from .common import finish, insufficient
from .context import RunContext
from .meter import OutOfReservation
from .votes import answer_key

CRITIQUE_SYSTEM = (
    "You review an answer to a problem. Check every step and the final answer. "
    "Start your reply with 'VERDICT: ACCEPT' if the answer is correct and complete, "
    "or 'VERDICT: REVISE' followed by the concrete problems to fix."
)
REVISE_INSTRUCTION = (
    "A reviewer found problems with your answer:\n{critique}\n\n"
    "Write a corrected, complete answer to the original problem. Keep the same final-answer format."
)

_VERDICT = re.compile(r"VERDICT\s*:?\s*\**\s*(ACCEPT|REVISE)", re.I)


def critique_accepts(text: str) -> bool:
    """True only for an explicit acceptance; anything unclear means revise."""
    m = _VERDICT.search(text)
    if m:
        return m.group(1).upper() == "ACCEPT"
    upper = text.upper()
    return "ACCEPT" in upper and "REVISE" not in upper and "INCORRECT" not in upper


def critique_messages(messages: list[Message], draft: str) -> list[Message]:
    return [
        {"role": "system", "content": CRITIQUE_SYSTEM},
        {"role": "user", "content": f"## Problem\n{prompt_text(messages)}\n\n## Answer\n{draft}"},
    ]


def revise_messages(messages: list[Message], draft: str, critique: str) -> list[Message]:
    return [
        *messages,
        {"role": "assistant", "content": draft},
        {"role": "user", "content": REVISE_INSTRUCTION.format(critique=critique)},
    ]


def round_models(ctx: RunContext, r: int) -> tuple[str | None, str | None]:
    spec = ctx.spec
    override = (spec.round_models or [])[r] if spec.round_models and r < len(spec.round_models) else {}
    critique = override.get("critique") or spec.critique_model or spec.strong_model or ctx.model
    revise = override.get("revise") or spec.revise_model or ctx.model
    return critique, revise


def worst_case(
    ctx: RunContext, messages: list[Message], rounds: int, *, draft_model: str | None = None,
    extra_prompt_tokens: int = 0,
) -> float:
    draft_model = draft_model or ctx.spec.draft_model or ctx.model
    cost = ctx.estimate(messages, 1, model=draft_model, extra_prompt_tokens=extra_prompt_tokens)
    crit_tokens = ctx.spec.critique_max_tokens
    for r in range(rounds):
        critique_model, revise_model = round_models(ctx, r)
        cost += ctx.estimate(
            critique_messages(messages, ""), 1, model=critique_model, max_tokens=crit_tokens,
            extra_prompt_tokens=extra_prompt_tokens + ctx.max_tokens,
        )
        cost += ctx.estimate(
            revise_messages(messages, "", ""), 1, model=revise_model,
            extra_prompt_tokens=extra_prompt_tokens + ctx.max_tokens + crit_tokens,
        )
    return cost


async def run_refine(messages: list[Message], ctx: RunContext, *, rounds: int | None = None) -> StrategyResult:
    rounds = ctx.spec.rounds if rounds is None else rounds
    draft_model = ctx.spec.draft_model or ctx.model
    fit = await ctx.meter.reserve_largest(lambda r: worst_case(ctx, messages, r - 1), rounds + 1)
    if fit is None:
        raise await insufficient(ctx, messages, draft_model)
    planned = fit - 1
    outcome = await refine_loop(messages, ctx, planned)
    info = StrategyInfo(
        "refine", planned, degraded=planned < rounds,
        reason=f"budget fits {planned} of {rounds} rounds" if planned < rounds else None,
    )
    current = outcome.final
    return await finish(
        ctx, text=current.text, info=info, chosen=current, answer=answer_key(current, ctx.spec.extractor),
        exhausted=outcome.exhausted, meta={"rounds_run": outcome.rounds_run, "accepted": outcome.accepted},
    )


@dataclass(frozen=True)
class RefineOutcome:
    final: Completion
    rounds_run: int
    accepted: bool
    exhausted: bool


async def refine_loop(
    messages: list[Message], ctx: RunContext, rounds: int, *, draft_model: str | None = None
) -> RefineOutcome:
    """Draft + up to `rounds` critique/revise rounds inside an open reservation."""
    draft_model = draft_model or ctx.spec.draft_model or ctx.model
    [current] = await ctx.meter.generate(messages, 1, model=draft_model, role="draft", **ctx.call_params())
    accepted, ran, exhausted = False, 0, False
    try:
        for r in range(rounds):
            critique_model, revise_model = round_models(ctx, r)
            [crit] = await ctx.meter.generate(
                critique_messages(messages, current.text), 1, model=critique_model, role="critique",
                **ctx.call_params(max_tokens=ctx.spec.critique_max_tokens),
            )
            ran = r + 1
            if critique_accepts(crit.text):
                accepted = True
                break
            revised: list[Completion] = await ctx.meter.generate(
                revise_messages(messages, current.text, crit.text), 1, model=revise_model, role="revise",
                **ctx.call_params(),
            )
            current = revised[0]
    except OutOfReservation:
        exhausted = True  # a Generator under-estimated; keep the last answer
    return RefineOutcome(current, ran, accepted, exhausted)
