"""The generative reward model: a chat model grades each candidate 0-10 through the Meter."""

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from strategies.base import Completion, Message
from strategies.lab.budget import InMemoryBudget
from strategies.context import RunContext
from strategies.meter import Meter
from strategies.reward import parse_reward, reward_cost
from strategies.runner import run_strategy
from strategies.selectors import select
from strategies.spec import TTCSpec

from .fakes import ScriptedGenerator, TracingBudget

MSGS = [{"role": "user", "content": "What is 6*7?"}]
PARAMS = {"max_tokens": 20, "temperature": 0.9, "response_format": {"type": "json_object"}}


def grade(messages: list, i: int) -> str:
    """The grader likes 42 and says so in a different format each time."""
    answer = messages[-1]["content"].rsplit("## Candidate answer\n", 1)[-1]
    return "Score: 9/10" if "42" in answer else '{"score": 3}'


def test_parse_reward_is_robust() -> None:
    assert parse_reward('{"score": 7}') == pytest.approx(0.7)
    assert parse_reward("Sure! Score: 8.5 - the reasoning holds.") == pytest.approx(0.85)
    assert parse_reward("I'd say 6 out of 10") == pytest.approx(0.6)
    assert parse_reward("3/10") == pytest.approx(0.3)
    assert parse_reward(" 10 ") == 1.0
    assert parse_reward('{"score": 42}') == 1.0  # clamped to the scale
    assert parse_reward("score: -3") == 0.0
    for junk in ("", "no idea", '{"score": "high"}', "{not json", '{"score": NaN}', "nan"):
        assert parse_reward(junk) == 0.0


async def test_best_of_n_reward_model_grades_each_candidate_and_is_accounted() -> None:
    gen = ScriptedGenerator({"sample": ["\\boxed{41}", "\\boxed{41}", "\\boxed{42}"], "reward": grade})
    budget = TracingBudget(balance_usd=10.0)
    spec = TTCSpec(strategy="best_of_n", n=3, selector="reward", reward_model="grader", reward_max_tokens=8)
    res = await run_strategy(MSGS, spec, generator=gen, budget=budget, params=PARAMS)
    # the grader overrules the 2-1 vote
    assert res.answer == "42" and res.meta["selector"] == "reward"
    assert res.meta["scores"] == pytest.approx([0.3, 0.3, 0.9])
    rewards = [c for c in gen.calls if c.role == "reward"]
    assert len(rewards) == 3 and all(c.model == "grader" and c.n == 1 for c in rewards)
    # graded greedily, with the grader's own cap, not under the answer's JSON format
    assert all(c.params["max_tokens"] == 8 and c.params["temperature"] == 0.0 for c in rewards)
    assert all("response_format" not in c.params for c in rewards)
    assert "\\boxed{42}" in rewards[2].messages[-1]["content"] and "6*7" in rewards[2].messages[-1]["content"]
    # every grading call is a CallRecord: in usage, cost and ttc.calls
    assert [c.role for c in res.calls].count("reward") == 3
    assert res.usage.completion_tokens == 6 * 20 and res.usage.prompt_tokens == 10 + 3 * 10
    assert res.cost_usd == pytest.approx(budget.spent_usd)
    assert sum(1 for c in res.ttc_dict()["calls"] if c["role"] == "reward" and c["cost_usd"] > 0) == 3
    # the up-front reservation covered the samples and the grading calls
    assert budget.trace[0][0] == "reserve" and budget.trace[0][1] >= res.cost_usd


async def test_unparseable_grades_fall_back_to_the_vote_not_an_error() -> None:
    gen = ScriptedGenerator({"sample": ["\\boxed{41}", "\\boxed{42}", "\\boxed{42}"], "reward": ["hmm"]})
    spec = TTCSpec(strategy="best_of_n", n=3, selector="reward", reward_model="grader")
    res = await run_strategy(MSGS, spec, generator=gen, budget=InMemoryBudget(), params=PARAMS)
    assert res.meta["scores"] == [0.0, 0.0, 0.0]
    assert res.answer == "42"  # all tied at 0: the vote breaks the tie


def make_ctx(gen: ScriptedGenerator, **spec_kw: Any) -> RunContext:
    return RunContext(meter=Meter(gen, InMemoryBudget()), spec=TTCSpec(**spec_kw), params={"max_tokens": 20})


def comp(text: str) -> Completion:
    return Completion(text=text, model="m", prompt_tokens=1, completion_tokens=1, cost_usd=0.0)


async def test_reward_calls_that_do_not_fit_fall_back_to_majority_and_say_so() -> None:
    gen = ScriptedGenerator({"reward": grade})
    ctx = make_ctx(gen, reward_model="grader")
    cands = [comp("\\boxed{41}"), comp("\\boxed{41}"), comp("\\boxed{42}")]
    assert await ctx.meter.reserve(reward_cost(ctx, MSGS, 3) * 0.9)  # two of three would fit: none is made
    sel = await select("reward", MSGS, cands, ctx)
    assert sel.method == "reward->majority" and sel.answer == "41"
    assert sel.detail["why"] == "no budget for reward model"
    assert gen.calls == []


@dataclass
class SlowGrader(ScriptedGenerator):
    """Counts how many grading calls are in flight at once."""

    in_flight: int = 0
    peak: int = 0

    async def generate(self, messages: list[Message], n: int, **kw: Any) -> list[Completion]:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        return await super().generate(messages, n, **kw)


async def test_grading_calls_run_in_parallel_each_reserved_first() -> None:
    gen = SlowGrader({"reward": grade})
    ctx = make_ctx(gen, reward_model="grader")
    cands = [comp("\\boxed{41}"), comp("\\boxed{42}"), comp("\\boxed{43}")]
    assert await ctx.meter.reserve(reward_cost(ctx, MSGS, 3))  # exactly enough for all three
    sel = await select("reward", MSGS, cands, ctx)
    assert (sel.index, sel.method) == (1, "reward")
    assert gen.peak == 3 and len(ctx.meter.calls) == 3
    await ctx.meter.close()


async def test_one_candidate_needs_no_grading() -> None:
    gen = ScriptedGenerator({"reward": grade})
    sel = await select("reward", MSGS, [comp("\\boxed{7}")], make_ctx(gen, reward_model="grader"))
    assert (sel.index, sel.answer) == (0, "7") and gen.calls == []
