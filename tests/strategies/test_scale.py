import json

from strategies.budget import InMemoryBudget
from strategies.runner import run_strategy
from strategies.scale import parse_decomposition, parse_ratings
from strategies.spec import TTCSpec

from .fakes import ScriptedGenerator

MSGS = [{"role": "user", "content": "A train goes 60 km/h for 2 h, then 40 km/h for 1 h. Average speed?"}]
PARAMS = {"max_tokens": 20}
DECOMP = json.dumps({"subproblems": [{"question": "Total distance?"}, {"question": "Average speed?"}]})


def solve(messages: list, i: int) -> str:
    return "ANSWER-" + messages[-1]["content"].rsplit("\n", 1)[-1]


async def test_scale_stages_models_and_context_passing() -> None:
    gen = ScriptedGenerator({"decompose": [DECOMP], "system1": solve, "system2": solve, "synthesize": ["\\boxed{53.3}"]})

    async def difficulty(q: str) -> float:
        return 0.9 if "distance" in q else 0.2

    spec = TTCSpec(strategy="scale", cheap_model="small", strong_model="big", hard_n=3, system1_max_tokens=32)
    res = await run_strategy(MSGS, spec, generator=gen, budget=InMemoryBudget(), params=PARAMS,
                             difficulty_fn=difficulty)
    assert [(c.role, c.model, c.n) for c in gen.calls] == [
        ("decompose", "big", 1), ("system1", "small", 1), ("system2", "big", 3), ("synthesize", "big", 1)]
    assert gen.calls[1].params["max_tokens"] == 32
    # the hard step sees the easy step's answer; synthesis sees both
    assert "ANSWER-Total distance?" in gen.calls[2].messages[-1]["content"]
    synth = gen.calls[3].messages[-1]["content"]
    assert "ANSWER-Total distance?" in synth and "ANSWER-Average speed?" in synth
    assert res.text == "\\boxed{53.3}" and res.answer == "53.3"
    assert [s["hard"] for s in res.meta["steps"]] == [False, True]
    assert len(res.calls) == 1 + 1 + 3 + 1


async def test_scale_llm_rating_and_bad_decomposition() -> None:
    gen = ScriptedGenerator({"decompose": ["I'd rather not"], "rate": ['{"ratings": [1]}'], "system1": solve,
                             "synthesize": ["done"]})
    spec = TTCSpec(strategy="scale", difficulty_source="llm")
    res = await run_strategy(MSGS, spec, generator=gen, budget=InMemoryBudget(), params=PARAMS)
    assert gen.roles() == ["decompose", "rate", "system1", "synthesize"]
    assert res.meta["steps"][0]["question"] == MSGS[0]["content"]


async def test_scale_degrades_to_single_when_plan_does_not_fit() -> None:
    gen = ScriptedGenerator({"sample": ["one shot"]})
    res = await run_strategy(MSGS, TTCSpec(strategy="scale"), generator=gen, budget=InMemoryBudget(balance_usd=0.05),
                             params=PARAMS)
    assert res.strategy.name == "single" and res.strategy.degraded and res.text == "one shot"


def test_parsers() -> None:
    assert parse_decomposition(DECOMP, 1) == ["Total distance?"]
    assert parse_decomposition('{"subproblems": []}', 3) is None
    assert parse_ratings('{"ratings": [1, 5, "x"]}', 3) == [1.0, 0.0, None]
    assert parse_ratings("nope", 2) == [None, None]
