import json
from collections.abc import Callable

import pytest

from strategies.lab.budget import InMemoryBudget
from strategies.runner import run_strategy
from strategies.scale import parse_decomposition, parse_ratings
from strategies.spec import TTCSpec

from .fakes import ScriptedGenerator, TracingBudget

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


async def test_scale_releases_unused_plan_as_soon_as_decomposition_is_done() -> None:
    # Reserved for 4 hard sub-problems; the decomposition yields 1. The surplus
    # must go back before the solve and synthesis stages run, not at the end.
    budget = TracingBudget()
    held_when: dict[str, float] = {}

    def at(role: str, text: str) -> Callable[[list, int], str]:
        def script(messages: list, i: int) -> str:
            held_when.setdefault(role, budget.held_usd)
            return text
        return script

    one_step = json.dumps({"subproblems": [{"question": "Average speed?"}]})
    gen = ScriptedGenerator({"decompose": at("decompose", one_step), "system2": at("system2", "\\boxed{53.3}"),
                             "synthesize": at("synthesize", "\\boxed{53.3}")})

    async def hard(q: str) -> float:
        return 0.1

    spec = TTCSpec(strategy="scale", max_subproblems=4, hard_n=3)
    res = await run_strategy(MSGS, spec, generator=gen, budget=budget, params=PARAMS, difficulty_fn=hard)
    assert gen.roles() == ["decompose", "system2", "synthesize"] and res.answer == "53.3"
    first_hold = budget.trace[0][1]
    assert held_when["decompose"] == pytest.approx(first_hold)
    # after decomposition: only 1 step + synthesis is still held, far below the 4-step plan
    assert held_when["system2"] < first_hold / 2
    # the step spent its whole worst case here, so nothing more to give back before synthesis
    assert held_when["synthesize"] <= held_when["system2"]
    # every hold settled within its amount (InMemoryBudget raises otherwise), nothing left open
    assert budget.open_holds == 0 and budget.spent_usd == pytest.approx(res.cost_usd)
    assert [kind for kind, _, _ in budget.trace][:3] == ["reserve", "settle", "reserve"]


def test_parsers() -> None:
    assert parse_decomposition(DECOMP, 1) == ["Total distance?"]
    assert parse_decomposition('{"subproblems": []}', 3) is None
    assert parse_ratings('{"ratings": [1, 5, "x"]}', 3) == [1.0, 0.0, None]
    assert parse_ratings("nope", 2) == [None, None]
