"""Adaptive: plans from difficulty, stops early on decisive or hopeless votes, verifier stop."""

from strategies.lab.budget import InMemoryBudget
from strategies.policy import ConsistencyPolicy, TablePolicy, checkpoints
from strategies.runner import run_strategy
from strategies.spec import TTCSpec

from .fakes import ScriptedGenerator, TracingBudget

MSGS = [{"role": "user", "content": "What is 6*7?"}]
PARAMS = {"max_tokens": 20}


async def run(gen: ScriptedGenerator, **kw: object):  # type: ignore[no-untyped-def]
    spec_kw = {k: v for k, v in kw.items() if k in TTCSpec.model_fields}
    other = {k: v for k, v in kw.items() if k not in TTCSpec.model_fields}
    return await run_strategy(MSGS, TTCSpec(strategy="adaptive", **spec_kw), generator=gen,  # type: ignore[arg-type]
                              budget=InMemoryBudget(), params=PARAMS, **other)  # type: ignore[arg-type]


async def test_decisive_vote_stops_early() -> None:
    gen = ScriptedGenerator({"sample": ["\\boxed{42}"]})
    res = await run(gen, n=8)
    # default rule: first wave of 2, then one at a time; 3-0 is decisive at 90%
    assert len(res.calls) == 3 and res.answer == "42"
    assert [c.n for c in gen.calls] == [2, 1]
    assert res.strategy.as_dict() == {"name": "adaptive", "n": 3, "degraded": False}


async def test_split_vote_keeps_sampling() -> None:
    gen = ScriptedGenerator({"sample": ["\\boxed{1}", "\\boxed{2}", "\\boxed{1}", "\\boxed{2}", "\\boxed{1}",
                                        "\\boxed{1}", "\\boxed{1}", "\\boxed{1}"]})
    res = await run(gen, n=8)
    assert len(res.calls) > 4 and res.answer == "1"


async def test_scattered_votes_give_up() -> None:
    gen = ScriptedGenerator({"sample": [f"\\boxed{{{i}}}" for i in range(8)]})
    res = await run(gen, n=8)
    assert len(res.calls) == 4  # all distinct after 4: more samples rarely converge


async def test_verifier_pass_stops_at_once() -> None:
    gen = ScriptedGenerator({"sample": ["\\boxed{1}", "\\boxed{2}", "\\boxed{42}", "\\boxed{3}"]})
    res = await run(gen, n=8, selector="verifier", verifier=lambda m, c: "42" in c.text)
    assert len(res.calls) == 3 and res.answer == "42" and res.meta["selector"] == "verifier"


async def test_predicted_easy_runs_single_and_hopeless_escalates() -> None:
    gen = ScriptedGenerator({"sample": ["\\boxed{42}"]})
    res = await run(gen, n=8, difficulty=0.99)
    assert res.strategy.name == "single" and len(res.calls) == 1
    gen = ScriptedGenerator({"sample": ["\\boxed{42}"]})
    res = await run(gen, n=8, difficulty=0.01, strong_model="big")
    assert res.strategy.name == "single" and gen.calls[0].model == "big"
    gen = ScriptedGenerator({"sample": ["\\boxed{42}"]})
    res = await run(gen, n=8, difficulty=0.5)
    assert res.strategy.name == "adaptive"


async def test_table_policy_drives_stopping() -> None:
    # Learned table: after one sample with a high reward score, more samples are worth nothing.
    cells = {"1|1|0|2": [50.0, 0.0], "1|1|0|1": [50.0, 0.4], "1": [100.0, 0.2]}
    policy = TablePolicy(max_n=4, schedule=checkpoints(1, 1, 4), threshold=0.01, score_edges=[0.0], cells=cells)
    gen = ScriptedGenerator({"sample": ["good"]}, scores={"good": 3.0})
    res = await run(gen, n=4, policy=policy)
    assert len(res.calls) == 1
    gen = ScriptedGenerator({"sample": ["bad"]}, scores={"bad": -3.0})
    res = await run(gen, n=4, policy=policy)
    assert len(res.calls) > 1


def test_consistency_rule_thresholds() -> None:
    from strategies.votes import tally

    pol = ConsistencyPolicy(max_n=8, confidence=0.9)
    assert not pol.should_stop(tally(["a", "a"]), 8)
    assert pol.should_stop(tally(["a", "a", "a"]), 8)
    assert not pol.should_stop(tally(["a", "a", "a", "b"]), 8)
    assert pol.should_stop(tally(["a", "b", "c", "d"]), 8)
    assert pol.should_stop(tally(["a", "b"]), 2)


async def test_verifier_selector_without_verifier_is_a_config_error() -> None:
    import pytest

    from strategies.base import StrategyError

    gen = ScriptedGenerator({"sample": ["\\boxed{1}"]})
    with pytest.raises(StrategyError):
        await run(gen, n=4, selector="verifier")
    assert gen.calls == []


async def test_judge_budget_is_held_back_from_sampling() -> None:
    # Split votes keep adaptive sampling. A sample costs 0.03 (a wave: 0.01 + 0.02 per sample) and
    # the judge over k candidates 0.03 + 0.028k. Drawing all 6 samples (0.17) would leave 0.08 of
    # 0.25, too little for the judge, and the vote would decide: waves must leave the judge's share.
    gen = ScriptedGenerator({"sample": ["\\boxed{1}", "\\boxed{2}"], "judge": ['{"best": 2}']})
    budget = TracingBudget(balance_usd=0.25)
    spec = TTCSpec(strategy="adaptive", n=6, selector="judge", judge_max_tokens=16)
    res = await run_strategy(MSGS, spec, generator=gen, budget=budget, params=PARAMS)
    assert res.meta["selector"] == "judge" and res.answer == "2"
    assert gen.roles()[-1] == "judge" and res.strategy.degraded and not res.budget_exhausted
    assert budget.spent_usd <= 0.25 and budget.open_holds == 0


async def test_reward_model_budget_is_held_back_from_sampling() -> None:
    # Each grading call costs (10 + 20 + 8) * 0.001 + 20 * 0.001 = 0.058.
    def grade(messages: list, i: int) -> str:
        return "Score: 9" if "\\boxed{2}" in messages[-1]["content"] else "Score: 2"

    gen = ScriptedGenerator({"sample": ["\\boxed{1}", "\\boxed{2}"], "reward": grade})
    budget = TracingBudget(balance_usd=0.25)
    spec = TTCSpec(strategy="adaptive", n=6, selector="reward", reward_model="grader", reward_max_tokens=4)
    res = await run_strategy(MSGS, spec, generator=gen, budget=budget, params=PARAMS)
    assert res.meta["selector"] == "reward" and res.answer == "2"
    rewards = [c for c in res.calls if c.role == "reward"]
    assert len(rewards) == res.strategy.n and all(c.model == "grader" for c in rewards)
    assert budget.spent_usd <= 0.25 and budget.open_holds == 0
