import pytest

from strategies.base import Completion, StrategyError
from strategies.lab.budget import InMemoryBudget
from strategies.context import RunContext
from strategies.meter import Meter
from strategies.selectors import parse_judge, select, select_majority
from strategies.spec import TTCSpec

from .fakes import ScriptedGenerator


def comp(text: str, score: float | None = None, answer: str | None = None) -> Completion:
    return Completion(text=text, model="m", prompt_tokens=1, completion_tokens=1, cost_usd=0.0, score=score,
                      answer=answer)


def make_ctx(gen: ScriptedGenerator, **spec_kw: object) -> RunContext:
    meter = Meter(gen, InMemoryBudget())
    return RunContext(meter=meter, spec=TTCSpec(**spec_kw), params={"max_tokens": 20})  # type: ignore[arg-type]


MSGS = [{"role": "user", "content": "What is 6*7?"}]


def test_majority_counts_votes() -> None:
    cands = [comp("\\boxed{41}"), comp("\\boxed{42}"), comp("it is 42"), comp("\\boxed{42.0}")]
    sel = select_majority(cands)
    assert sel.answer == "42"
    assert sel.index == 1  # first member of the winning cluster
    assert sel.detail["votes"] == {"41": 1, "42": 3}


def test_majority_tie_broken_by_reward_then_order() -> None:
    tie = [comp("\\boxed{1}", score=0.1), comp("\\boxed{2}", score=0.9), comp("\\boxed{1}", score=0.1),
           comp("\\boxed{2}", score=0.2)]
    assert select_majority(tie).answer == "2"
    unscored = [comp("\\boxed{1}"), comp("\\boxed{2}"), comp("\\boxed{2}"), comp("\\boxed{1}")]
    assert select_majority(unscored).answer == "1"


def test_majority_uses_pre_extracted_answers() -> None:
    cands = [comp("", answer="7"), comp("", answer="\\frac{14}{2}"), comp("", answer="8")]
    assert select_majority(cands).answer == "7"


def test_parse_judge() -> None:
    assert parse_judge('Sure. {"best": 2, "scores": [3, 9]}', 2) == 1
    assert parse_judge('{"scores": [3, 9, 1]}', 3) == 1
    assert parse_judge("Best candidate: 3", 3) == 2
    assert parse_judge('{"best": 7}', 3) is None
    assert parse_judge("no idea", 3) is None


async def test_judge_selector_calls_judge_model() -> None:
    gen = ScriptedGenerator({"judge": ['{"best": 2, "scores": [1, 8, 2]}']})
    ctx = make_ctx(gen, judge_model="big")
    assert await ctx.meter.reserve(10.0)
    cands = [comp("\\boxed{1}"), comp("\\boxed{2}"), comp("\\boxed{1}")]
    sel = await select("judge", MSGS, cands, ctx)
    assert (sel.index, sel.method) == (1, "judge")
    [call] = gen.calls
    assert call.role == "judge" and call.model == "big"
    assert "Candidate 3" in call.messages[-1]["content"]


async def test_judge_unparseable_falls_back_to_majority() -> None:
    gen = ScriptedGenerator({"judge": ["I like them all"]})
    ctx = make_ctx(gen)
    assert await ctx.meter.reserve(10.0)
    sel = await select("judge", MSGS, [comp("\\boxed{1}"), comp("\\boxed{2}"), comp("\\boxed{2}")], ctx)
    assert sel.method == "judge->majority" and sel.answer == "2"


async def test_verifier_selector_first_passing() -> None:
    ctx = make_ctx(ScriptedGenerator({}))
    ctx.verifier = lambda msgs, c: "42" in c.text
    cands = [comp("\\boxed{41}"), comp("\\boxed{41}"), comp("\\boxed{42}")]
    sel = await select("verifier", MSGS, cands, ctx)
    assert (sel.index, sel.method) == (2, "verifier")


async def test_verifier_async_and_none_pass() -> None:
    ctx = make_ctx(ScriptedGenerator({}))

    async def never(msgs: list, c: Completion) -> bool:
        return False

    ctx.verifier = never
    sel = await select("verifier", MSGS, [comp("\\boxed{1}"), comp("\\boxed{1}")], ctx)
    assert sel.method == "verifier->majority" and sel.answer == "1"


async def test_verifier_missing_is_a_config_error() -> None:
    with pytest.raises(StrategyError):
        await select("verifier", MSGS, [comp("x")], make_ctx(ScriptedGenerator({})))


async def test_reward_selector_with_scorer_and_with_attached_scores() -> None:
    ctx = make_ctx(ScriptedGenerator({}))

    async def scorer(msgs: list, cands: list) -> list[float]:
        return [len(c.text) for c in cands]

    ctx.reward_scorer = scorer
    sel = await select("reward", MSGS, [comp("a"), comp("abc"), comp("ab")], ctx)
    assert sel.index == 1
    ctx.reward_scorer = None
    sel = await select("reward", MSGS, [comp("a", 0.2), comp("b", -1.0), comp("c", 0.7)], ctx)
    assert sel.index == 2
    with pytest.raises(StrategyError):
        await select("reward", MSGS, [comp("a"), comp("b")], ctx)
