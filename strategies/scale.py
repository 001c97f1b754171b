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

The worst case (`max_subproblems` sub-problems, each on its dearer path) is
reserved up front, and shrunk as stages finish: after decomposition (often
fewer sub-problems), after rating (easy ones are cheap) and after each step,
the part of the reservation the rest of the plan can no longer need is
released at once (`Meter.release_unused`). If it does not fit, the plan degrades along a ladder -- first fewer
System-2 samples/rounds, then fewer sub-problems -- and, as a last resort, to a
plain single call. An unparseable decomposition runs the whole problem as one
hard sub-problem.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from pydantic import BaseModel, Field, ValidationError

from contracts.prompts import prompt_text

from .base import Completion, Message, StrategyInfo, StrategyResult
from .best_of_n import sample_and_select
from .common import finish
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
RATE_MAX_TOKENS = 64
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
        {"role": "user", "content": SOLVE_TEMPLATE.format(problem=prompt_text(messages), context=context,
                                                           question=question)},
    ]


def rate_messages(questions: list[str]) -> list[Message]:
    listing = "\n".join(f"{i + 1}. {q}" for i, q in enumerate(questions))
    return [{"role": "system", "content": RATE_SYSTEM}, {"role": "user", "content": listing}]


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

    def hard_cost(self, msgs: list[Message], extra: int) -> float:
        ctx = self.ctx
        if ctx.spec.hard_strategy == "refine":
            return refine_worst_case(ctx, msgs, self.hard_size - 1, draft_model=self.strong,
                                     extra_prompt_tokens=extra)
        return ctx.estimate(msgs, self.hard_size, model=self.strong, extra_prompt_tokens=extra)

    def easy_cost(self, msgs: list[Message], extra: int) -> float:
        return self.ctx.estimate(msgs, 1, model=self.cheap, max_tokens=self.ctx.spec.system1_max_tokens,
                                 extra_prompt_tokens=extra)

    def answer_cap(self, hard: bool | None) -> int:
        """Most tokens a step's answer adds to later prompts (None: not rated yet)."""
        easy, hard_cap = self.ctx.spec.system1_max_tokens, self.ctx.max_tokens
        if hard is None:
            return max(easy, hard_cap)
        return hard_cap if hard else easy

    def worst_case(self) -> float:
        cost = self.ctx.estimate(self.decompose_messages(), 1, model=self.planner,
                                 max_tokens=self.ctx.spec.plan_max_tokens)
        return cost + self.remaining_cost([None] * self.subproblems, done=0, rate=self.uses_llm_rating)

    def remaining_cost(
        self, hard: list[bool | None], *, done: int, rate: bool, questions: list[str] | None = None
    ) -> float:
        """Worst case of what is left once the first `done` steps are solved.

        `hard[i]` is step i's rating, None before rating (then the dearer of
        the two paths). Each step's prompt carries the step texts and all
        earlier answers. Before decomposition the texts are unknown and priced
        at the decomposition's `plan_max_tokens`; once `questions` are known
        they are priced as they are (an unparseable decomposition runs the
        whole prompt as one step, which may be longer than that cap).
        """
        ctx = self.ctx
        placeholders = [Step(q, None, False, "") for q in questions or []]

        def step_prompt(i: int) -> tuple[list[Message], int]:
            if questions is None:
                return solve_messages(self.messages, [], ""), ctx.spec.plan_max_tokens
            return solve_messages(self.messages, placeholders[:i], questions[i]), 0

        cost = 0.0
        if rate:
            if questions is None:
                cost += ctx.estimate(rate_messages([]), 1, model=self.planner, max_tokens=RATE_MAX_TOKENS,
                                     extra_prompt_tokens=ctx.spec.plan_max_tokens)
            else:
                cost += ctx.estimate(rate_messages(questions), 1, model=self.planner, max_tokens=RATE_MAX_TOKENS)
        answers = sum(self.answer_cap(h) for h in hard[:done])
        for i in range(done, len(hard)):
            msgs, texts = step_prompt(i)
            h, extra = hard[i], texts + answers
            if h is None:
                cost += max(self.hard_cost(msgs, extra), self.easy_cost(msgs, extra))
            else:
                cost += self.hard_cost(msgs, extra) if h else self.easy_cost(msgs, extra)
            answers += self.answer_cap(h)
        if questions is None:
            synth, texts = synth_messages(self.messages, []), ctx.spec.plan_max_tokens
        else:
            synth, texts = synth_messages(self.messages, placeholders), 0
        return cost + ctx.estimate(synth, 1, model=self.strong, extra_prompt_tokens=texts + answers)

    async def release(self, questions: list[str], hard: list[bool | None], *, done: int, rate: bool = False) -> None:
        """Give back now what the rest of the plan can no longer need.

        Decomposition may yield fewer sub-problems than reserved for, rating
        may find easy ones, and each solved step's worst case is behind us:
        the surplus returns to the tenant at once, not when SCALE ends.
        """
        keep = self.remaining_cost(hard, done=done, rate=rate, questions=questions)
        await self.ctx.meter.release_unused(keep)

    def decompose_messages(self) -> list[Message]:
        system = DECOMPOSE_SYSTEM.format(k=self.subproblems)
        return [{"role": "system", "content": system}, {"role": "user", "content": prompt_text(self.messages)}]


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
    [reply] = await ctx.meter.generate(
        rate_messages(questions), 1, model=plan.planner, role="rate", **ctx.call_params(max_tokens=RATE_MAX_TOKENS),
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
        questions = parse_decomposition(dec.text, plan.subproblems) or [prompt_text(messages)]
        await plan.release(questions, [None] * len(questions), done=0, rate=plan.uses_llm_rating)
        ratings = await _rate(plan, questions)
        # Unknown difficulty counts as hard: under-spending on a hard step
        # costs more accuracy than over-spending on an easy one.
        hard: list[bool | None] = [p is None or p < ctx.spec.easy_threshold for p in ratings]
        await plan.release(questions, hard, done=0)
        for i, (q, p) in enumerate(zip(questions, ratings)):
            chosen = await _solve(plan, solve_messages(messages, steps, q), bool(hard[i]))
            steps.append(Step(q, p, bool(hard[i]), chosen.text))
            await plan.release(questions, hard, done=i + 1)
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
