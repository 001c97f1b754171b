"""A generative reward model: a chat model grades each candidate 0-10.

Used by the `reward` selector when no reward scorer is injected and
`spec.reward_model` names a chat model. One call per candidate (role
`reward`), all through the Meter, so each is reserved before it is sent and
shows up in `usage`, the cost and `ttc.calls` like any other call. Grading
one candidate at a time (rather than all in one prompt, as the judge does)
keeps each score independent of the other candidates and of their order.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from typing import Any

from contracts.prompts import conversation_text

from .base import Completion, Message
from .context import RunContext
from .meter import OutOfReservation

REWARD_SYSTEM = (
    "You are a strict grader. You get a problem and one candidate answer. Check the reasoning and the "
    "final answer. Reply with only a JSON object: "
    '{"score": <0-10, where 0 is wrong and 10 is certainly correct and complete>}'
)
# Room for the prompt's framing around the spliced candidate, in tokens.
_FRAMING_TOKENS = 8
# A grader must not inherit the answer's output constraints (a JSON schema or
# stop words would cut its reply); its sampling is pinned to greedy so that
# the same candidate gets the same score.
_DROPPED_PARAMS = ("response_format", "stop", "logprobs", "top_logprobs")

_NUMBER = r"(-?\d+(?:\.\d+)?)"
_PATTERNS = (
    re.compile(r"score\W{0,4}?" + _NUMBER, re.IGNORECASE),  # "Score: 7", '"score": 7.5'
    re.compile(_NUMBER + r"\s*(?:/|out\s+of)\s*10\b", re.IGNORECASE),  # "7/10", "7 out of 10"
    re.compile(_NUMBER),  # a bare number, as asked
)


def uses_reward_model(ctx: RunContext) -> bool:
    """An injected scorer wins; the configured model is the gateway's default."""
    return ctx.reward_scorer is None and ctx.spec.reward_model is not None


def reward_messages(messages: list[Message], candidate: str) -> list[Message]:
    problem = conversation_text(messages)
    return [
        {"role": "system", "content": REWARD_SYSTEM},
        {"role": "user", "content": f"## Problem\n{problem}\n\n## Candidate answer\n{candidate}"},
    ]


def parse_reward(text: str) -> float:
    """The grade in [0,1]; 0.0 for anything unusable, never an exception.

    An unparseable reply counts as the lowest score rather than an error: the
    candidate loses the selection, and the strategy still answers.
    """
    value: Any = None
    m = re.search(r"\{.*\}", text, re.DOTALL)
    if m:
        try:
            obj = json.loads(m.group(0))
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("score"), (int, float)):
            value = obj["score"]
    if value is None:
        for pattern in _PATTERNS:
            found = pattern.search(text)
            if found:
                value = float(found.group(1))
                break
    if value is None or isinstance(value, bool) or not math.isfinite(float(value)):
        return 0.0
    return min(max(float(value), 0.0), 10.0) / 10.0


def reward_cost(ctx: RunContext, messages: list[Message], n: int) -> float:
    """Worst case of grading n candidates: n calls, each with one candidate spliced in."""
    if n <= 0:
        return 0.0
    one = ctx.estimate(
        reward_messages(messages, ""), 1, model=ctx.spec.reward_model, max_tokens=ctx.spec.reward_max_tokens,
        extra_prompt_tokens=ctx.max_tokens + _FRAMING_TOKENS,
    )
    return n * one


def _grader_params(ctx: RunContext) -> dict[str, Any]:
    params = {k: v for k, v in ctx.call_params(max_tokens=ctx.spec.reward_max_tokens).items()
              if k not in _DROPPED_PARAMS}
    params["temperature"] = 0.0
    return params


async def score_with_reward_model(
    messages: list[Message], completions: list[Completion], ctx: RunContext
) -> list[float]:
    """One grading call per candidate, in parallel, each reserved by the Meter.

    `Meter.generate` checks and books a call's worst case before its first
    await, so the gathered calls are admitted one by one against the open
    reservation. Errors propagate once every call has finished, so the calls
    that did complete are already on the books; `OutOfReservation` only when
    that was the sole problem.
    """
    params = _grader_params(ctx)
    results = await asyncio.gather(
        *(
            ctx.meter.generate(reward_messages(messages, c.text), 1, model=ctx.spec.reward_model, role="reward",
                               **params)
            for c in completions
        ),
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        # A real failure (upstream, cancellation) outranks a budget miss, which
        # the selector would quietly turn into a majority vote.
        real = [e for e in errors if not isinstance(e, OutOfReservation)]
        raise (real or errors)[0]
    return [parse_reward(r[0].text) for r in results]  # type: ignore[index]
