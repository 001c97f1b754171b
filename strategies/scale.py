"""`scale`: SCALE-style selective allocation over sub-problems.

1. Decompose the problem into ordered sub-problems, as structured JSON.
2. Rate each sub-problem: the injected difficulty function (the router's
   P(success)) or one LLM rating call, per `spec.difficulty_source` (the LLM
   rating is also used when no difficulty function is injected).
3. Easy sub-problems (P(success) >= `easy_threshold`) get a System-1 pass: the
   cheap model with a short output cap. Hard ones get System-2 compute: the
   strong model with best-of-N (majority) or refine.
4. Solve in order, each sub-problem seeing the earlier sub-answers, then
   synthesize the final answer.

The worst case (every sub-problem hard, `max_subproblems` of them) is reserved
up front. If it does not fit, the plan degrades along a ladder -- first fewer
System-2 samples/rounds, then fewer sub-problems -- and, as a last resort, to a
plain single call. An unparseable decomposition runs the whole problem as one
hard sub-problem.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from pydantic import BaseModel, Field, ValidationError

from .base import Completion, Message, StrategyInfo, StrategyResult
from .best_of_n import sample_and_select
from .common import finish, user_prompt
from .context import RunContext
from .meter import OutOfReservation
from .refine import refine_loop
from .refine import worst_case as refine_worst_case
from .single import run_single
from .votes import answer_key

DECOMPOSE_SYSTEM = (
    "Break the user's problem into at most {k} ordered sub-problems, each solvable on its own "
    "given the answers to the earlier ones. The last sub-problem must produce the final answer. "
    'Reply with only JSON: {{"subproblems": [{{"question": "..."}}, ...]}}'
)
RATE_SYSTEM = (
    "Rate how hard each numbered sub-problem is, from 1 (trivial) to 5 (very hard). "
    'Reply with only JSON: {"ratings": [<1-5 for each sub-problem, in order>]}'
)
SOLVE_TEMPLATE = "## Problem\n{problem}\n\n{context}## Now solve this step\n{question}"
SYNTH_INSTRUCTION = (
    "Solved steps:\n{steps}\n\nUsing these steps, give the complete final answer to the original "
    "problem, in the format it asks for."
)


class SubProblem(BaseModel):
    question: str = Field(min_length=1)


class Decomposition(BaseModel):
    subproblems: list[SubProblem] = Field(min_length=1)


@dataclass(frozen=True)
class Step:
    question: str
    p_success: float | None
    hard: bool
    answer: str


def parse_json_object(text: str) -> object | None:
    m = re.search(r"\{.*\}", text, re.S)
    if not m:
        return None
    try:
        return json.loads(m.group(0))
    except json.JSONDecodeError:
        return None


def parse_decomposition(text: str, limit: int) -> list[str] | None:
    obj = parse_json_object(text)
    try:
        dec = Decomposition.model_validate(obj)
    except ValidationError:
        return None
    return [s.question.strip() for s in dec.subproblems][:limit]


def parse_ratings(text: str, k: int) -> list[float | None]:
    """LLM 1-5 ratings as P(success) = 1 - (rating-1)/4; None where unusable."""
    obj = parse_json_object(text)
    ratings = obj.get("ratings") if isinstance(obj, dict) else None
    if not isinstance(ratings, list) or len(ratings) != k:
        return [None] * k
    out: list[float | None] = []
    for r in ratings:
        out.append(1.0 - (min(max(float(r), 1.0), 5.0) - 1.0) / 4.0 if isinstance(r, (int, float)) else None)
    return out


def solve_messages(messages: list[Message], steps: list[Step], question: str) -> list[Message]:
    context = "".join(f"## Step {i + 1}: {s.question}\n{s.answer}\n\n" for i, s in enumerate(steps))
    if context:
        context = "## Solved so far\n" + context
    return [
        {"role": "system", "content": "Solve the step you are given. Be concise and end with its result."},
        {"role": "user", "content": SOLVE_TEMPLATE.format(problem=user_prompt(messages), context=context,
                                                           question=question)},
    ]


def synth_messages(messages: list[Message], steps: list[Step]) -> list[Message]:
    listing = "\n".join(f"{i + 1}. {s.question}\n   -> {s.answer}" for i, s in enumerate(steps))
    return [*messages, {"role": "user", "content": SYNTH_INSTRUCTION.format(steps=listing)}]


class _Plan:
    """Model and size choices of one SCALE run (and its worst-case price)."""

    def __init__(self, ctx: RunContext, messages: list[Message], subproblems: int, hard_size: int) -> None:
        self.ctx, self.messages = ctx, messages
        self.subproblems, self.hard_size = subproblems, hard_size
        self.planner = ctx.spec.strong_model or ctx.model
        self.cheap = ctx.spec.cheap_model or ctx.model
        self.strong = ctx.spec.strong_model or ctx.model

    @property
    def uses_llm_rating(self) -> bool:
        return self.ctx.spec.difficulty_source == "llm" or self.ctx.difficulty_fn is None

    def hard_cost(self, extra: int) -> float:
        ctx, msgs = self.ctx, solve_messages(self.messages, [], "")
        if ctx.spec.hard_strategy == "refine":
            return refine_worst_case(ctx, msgs, self.hard_size - 1, draft_model=self.strong,
                                     extra_prompt_tokens=extra)
        return ctx.estimate(msgs, self.hard_size, model=self.strong, extra_prompt_tokens=extra)

    def worst_case(self) -> float:
        ctx, spec = self.ctx, self.ctx.spec
        plan_tokens, out_tokens = spec.plan_max_tokens, ctx.max_tokens
        cost = ctx.estimate(self.decompose_messages(), 1, model=self.planner, max_tokens=plan_tokens)
        if self.uses_llm_rating:
            cost += ctx.estimate([{"role": "system", "content": RATE_SYSTEM}], 1, model=self.planner,
                                 max_tokens=64, extra_prompt_tokens=plan_tokens)
        for i in range(self.subproblems):
            # Each step's prompt carries the step text and all earlier answers.
            cost += self.hard_cost(plan_tokens + i * out_tokens)
        cost += ctx.estimate(synth_messages(self.messages, []), 1, model=self.strong,
                             extra_prompt_tokens=plan_tokens + self.subproblems * out_tokens)
        return cost

    def decompose_messages(self) -> list[Message]:
        system = DECOMPOSE_SYSTEM.format(k=self.subproblems)
        return [{"role": "system", "content": system}, {"role": "user", "content": user_prompt(self.messages)}]


def _ladder(ctx: RunContext) -> list[tuple[int, int]]:
    """(sub-problems, hard size) from cheapest to the full plan."""
    spec = ctx.spec
    top = spec.hard_n if spec.hard_strategy == "best_of_n" else spec.rounds + 1
    return [(s, 1) for s in range(1, spec.max_subproblems + 1)] + [
        (spec.max_subproblems, h) for h in range(2, top + 1)
    ]


async def _rate(plan: _Plan, questions: list[str]) -> list[float | None]:
    ctx = plan.ctx
    if not plan.uses_llm_rating:
        assert ctx.difficulty_fn is not None
        return [await ctx.difficulty_fn(q) for q in questions]
    listing = "\n".join(f"{i + 1}. {q}" for i, q in enumerate(questions))
    [reply] = await ctx.meter.generate(
        [{"role": "system", "content": RATE_SYSTEM}, {"role": "user", "content": listing}],
        1, model=plan.planner, role="rate", **ctx.call_params(max_tokens=64),
    )
    return parse_ratings(reply.text, len(questions))


async def _solve(plan: _Plan, msgs: list[Message], hard: bool) -> Completion:
    ctx = plan.ctx
    if not hard:
        [c] = await ctx.meter.generate(msgs, 1, model=plan.cheap, role="system1",
                                       **ctx.call_params(max_tokens=ctx.spec.system1_max_tokens))
        return c
    if ctx.spec.hard_strategy == "refine":
        return (await refine_loop(msgs, ctx, plan.hard_size - 1, draft_model=plan.strong)).final
    chosen, _ = await sample_and_select(msgs, ctx, plan.hard_size, "majority", model=plan.strong, role="system2")
    return chosen


async def run_scale(messages: list[Message], ctx: RunContext) -> StrategyResult:
    ladder = _ladder(ctx)
    full = ladder[-1]
    fit = await ctx.meter.reserve_largest(lambda k: _Plan(ctx, messages, *ladder[k - 1]).worst_case(), len(ladder))
    if fit is None:
        return await run_single(messages, ctx, degraded=True, reason="budget too low for scale: ran single")
    plan = _Plan(ctx, messages, *ladder[fit - 1])
    degraded = ladder[fit - 1] != full
    steps: list[Step] = []
    chosen: Completion | None = None
    exhausted = False
    try:
        [dec] = await ctx.meter.generate(plan.decompose_messages(), 1, model=plan.planner, role="decompose",
                                         **ctx.call_params(max_tokens=ctx.spec.plan_max_tokens))
        questions = parse_decomposition(dec.text, plan.subproblems) or [user_prompt(messages)]
        ratings = await _rate(plan, questions)
        for q, p in zip(questions, ratings):
            # Unknown difficulty counts as hard: under-spending on a hard step
            # costs more accuracy than over-spending on an easy one.
            hard = p is None or p < ctx.spec.easy_threshold
            chosen = await _solve(plan, solve_messages(messages, steps, q), hard)
            steps.append(Step(q, p, hard, chosen.text))
        [chosen] = await ctx.meter.generate(synth_messages(messages, steps), 1, model=plan.strong,
                                            role="synthesize", **ctx.call_params())
    except OutOfReservation:
        exhausted = True
    if chosen is None:
        # Not even the decomposition ran: nothing to return but an empty answer.
        text = ""
    else:
        text = chosen.text
    info = StrategyInfo("scale", plan.hard_size, degraded=degraded,
                        reason=f"budget fits {plan.subproblems} sub-problems x size {plan.hard_size}" if degraded else None)
    return await finish(
        ctx, text=text, info=info, chosen=chosen,
        answer=answer_key(chosen, ctx.spec.extractor) if chosen else None, exhausted=exhausted,
        meta={"steps": [{"question": s.question, "p_success": s.p_success, "hard": s.hard} for s in steps]},
    )
