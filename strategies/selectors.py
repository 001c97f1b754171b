"""Selectors: pick one candidate out of N.

* `majority` -- vote over extracted answers (see `votes`), ties broken by
  summed reward score when available, then by draw order.
* `judge` -- a judge model (through the same metered Generator) reads all
  candidates and names the best one as JSON.
* `verifier` -- a user callable (unit tests, a regex); the first candidate that
  passes wins.
* `reward` -- a reward-model score per candidate (an injected async scorer, a
  configured chat model grading each candidate, see `reward`, or scores the
  Generator attached); the highest wins.

Every selector that cannot decide (judge output unparseable, no candidate
passes the verifier, no budget left for the judge or reward calls) falls back
to majority and says so in `Selection.method`.
"""

from __future__ import annotations

import inspect
import json
import re
from dataclasses import dataclass, field
from typing import Any

from contracts.prompts import conversation_text

from .base import Completion, Message, StrategyError
from .context import RunContext
from .meter import OutOfReservation
from .reward import reward_cost, score_with_reward_model, uses_reward_model
from .votes import answer_key, representative, tally


@dataclass(frozen=True)
class Selection:
    index: int
    answer: str | None
    method: str
    detail: dict[str, Any] = field(default_factory=dict)


def select_majority(completions: list[Completion], extractor: str = "auto") -> Selection:
    if not completions:
        raise ValueError("no candidates")
    keys = [answer_key(c, extractor) for c in completions]
    t = tally(keys, [c.score for c in completions])
    if t.leader is None:
        # Nothing extractable: return the first candidate rather than fail.
        return Selection(0, None, "majority", {"votes": {}})
    return Selection(
        representative(completions, keys, t.leader), t.leader, "majority", {"votes": dict(t.counts)}
    )


# ------------------------------------------------------------------- judge

JUDGE_SYSTEM = (
    "You are a strict grader. You get a problem and numbered candidate answers. "
    "Check each candidate's reasoning and final answer. Reply with only a JSON object: "
    '{"best": <number of the best candidate>, "scores": [<0-10 for each candidate, in order>]}'
)


def judge_messages(messages: list[Message], candidates: list[str]) -> list[Message]:
    problem = conversation_text(messages)
    body = "\n\n".join(f"### Candidate {i + 1}\n{c}" for i, c in enumerate(candidates))
    return [
        {"role": "system", "content": JUDGE_SYSTEM},
        {"role": "user", "content": f"## Problem\n{problem}\n\n## Candidates\n{body}"},
    ]


def parse_judge(text: str, n: int) -> int | None:
    """0-based index of the judge's pick, or None if the reply is unusable."""
    m = re.search(r"\{.*\}", text, re.S)
    if m:
        try:
            obj = json.loads(m.group(0))
            best = obj.get("best") if isinstance(obj, dict) else None
            if isinstance(best, int) and 1 <= best <= n:
                return best - 1
            scores = obj.get("scores") if isinstance(obj, dict) else None
            if isinstance(scores, list) and len(scores) == n and all(isinstance(s, (int, float)) for s in scores):
                return max(range(n), key=lambda i: scores[i])
        except json.JSONDecodeError:
            pass
    m = re.search(r"best\W*(?:candidate\W*)?(\d+)", text, re.I)
    if m and 1 <= int(m.group(1)) <= n:
        return int(m.group(1)) - 1
    return None


def judge_model(ctx: RunContext) -> str | None:
    return ctx.spec.judge_model or ctx.spec.strong_model or ctx.model


def judge_cost(ctx: RunContext, messages: list[Message], n: int) -> float:
    """Worst case of the judge call: the candidates are spliced into its prompt."""
    return ctx.estimate(
        judge_messages(messages, []), 1, model=judge_model(ctx), max_tokens=ctx.spec.judge_max_tokens,
        extra_prompt_tokens=n * (ctx.max_tokens + 8),
    )


async def select_judge(messages: list[Message], completions: list[Completion], ctx: RunContext) -> Selection:
    if len(completions) == 1:
        return Selection(0, answer_key(completions[0], ctx.spec.extractor), "judge", {"skipped": "one candidate"})
    try:
        [verdict] = await ctx.meter.generate(
            judge_messages(messages, [c.text for c in completions]),
            1,
            model=judge_model(ctx),
            role="judge",
            **ctx.call_params(max_tokens=ctx.spec.judge_max_tokens),
        )
    except OutOfReservation:
        fallback = select_majority(completions, ctx.spec.extractor)
        return Selection(fallback.index, fallback.answer, "judge->majority", {"why": "no budget for judge"})
    idx = parse_judge(verdict.text, len(completions))
    if idx is None:
        fallback = select_majority(completions, ctx.spec.extractor)
        return Selection(fallback.index, fallback.answer, "judge->majority", {"why": "unparseable judge reply"})
    return Selection(idx, answer_key(completions[idx], ctx.spec.extractor), "judge")


# ---------------------------------------------------------------- verifier


async def run_verifier(ctx: RunContext, messages: list[Message], completion: Completion) -> bool:
    if ctx.verifier is None:
        raise StrategyError("selector 'verifier' needs a verifier configured for this tenant")
    out = ctx.verifier(messages, completion)
    if inspect.isawaitable(out):
        out = await out
    return bool(out)


async def select_verifier(messages: list[Message], completions: list[Completion], ctx: RunContext) -> Selection:
    for i, c in enumerate(completions):
        if await run_verifier(ctx, messages, c):
            return Selection(i, answer_key(c, ctx.spec.extractor), "verifier", {"passed": i})
    fallback = select_majority(completions, ctx.spec.extractor)
    return Selection(fallback.index, fallback.answer, "verifier->majority", {"why": "no candidate passed"})


# ------------------------------------------------------------------ reward


async def reward_scores(messages: list[Message], completions: list[Completion], ctx: RunContext) -> list[float]:
    if ctx.reward_scorer is not None:
        scores = await ctx.reward_scorer(messages, completions)
        if len(scores) != len(completions):
            raise StrategyError("reward scorer returned a wrong number of scores")
        return [float(s) for s in scores]
    if all(c.score is not None for c in completions):
        return [float(c.score) for c in completions]  # type: ignore[arg-type]
    raise StrategyError("selector 'reward' needs a reward model configured for this tenant")


def _fallback(completions: list[Completion], ctx: RunContext, selector: str, why: str) -> Selection:
    vote = select_majority(completions, ctx.spec.extractor)
    return Selection(vote.index, vote.answer, f"{selector}->majority", {"why": why, **vote.detail})


async def select_reward(messages: list[Message], completions: list[Completion], ctx: RunContext) -> Selection:
    if uses_reward_model(ctx):
        if len(completions) == 1:
            return Selection(0, answer_key(completions[0], ctx.spec.extractor), "reward", {"skipped": "one candidate"})
        # All or nothing: grading only the candidates that fit would spend money
        # on a comparison that cannot be made.
        if not ctx.meter.fits(reward_cost(ctx, messages, len(completions))):
            return _fallback(completions, ctx, "reward", "no budget for reward model")
        try:
            scores = await score_with_reward_model(messages, completions, ctx)
        except OutOfReservation:
            return _fallback(completions, ctx, "reward", "no budget for reward model")
    else:
        scores = await reward_scores(messages, completions, ctx)
    idx = _best_scored(completions, scores, ctx.spec.extractor)
    return Selection(idx, answer_key(completions[idx], ctx.spec.extractor), "reward", {"scores": scores})


def _best_scored(completions: list[Completion], scores: list[float], extractor: str) -> int:
    """Highest score; ties go to the answer with most votes, then draw order.

    A grader that says the same for every candidate (or nothing parseable:
    all 0) then degrades to the majority vote instead of to the first sample.
    """
    best = max(scores)
    top = [i for i, s in enumerate(scores) if s >= best]
    if len(top) == 1:
        return top[0]
    keys = [answer_key(c, extractor) for c in completions]
    votes = {k: keys.count(k) for k in keys if k is not None}
    return max(top, key=lambda i: (votes.get(keys[i], 0), -i))  # type: ignore[arg-type]


def selection_cost(ctx: RunContext, messages: list[Message], n: int, selector: str) -> float:
    """Worst case of the calls `selector` makes to pick one of n candidates.

    Zero for selectors that make no metered call (majority, verifier, an
    injected or attached reward score) and for a single candidate.
    """
    if n <= 1:
        return 0.0
    if selector == "judge":
        return judge_cost(ctx, messages, n)
    if selector == "reward" and uses_reward_model(ctx):
        return reward_cost(ctx, messages, n)
    return 0.0


async def select(
    name: str, messages: list[Message], completions: list[Completion], ctx: RunContext
) -> Selection:
    if name == "majority":
        return select_majority(completions, ctx.spec.extractor)
    if name == "judge":
        return await select_judge(messages, completions, ctx)
    if name == "verifier":
        return await select_verifier(messages, completions, ctx)
    if name == "reward":
        return await select_reward(messages, completions, ctx)
    raise StrategyError(f"unknown selector {name!r}")
