"""The router's difficulty estimate, as the gateway hands it to the strategies (scale rates sub-problems with it)."""

from __future__ import annotations

import json

from gateway.pipeline.plan import difficulty_fn_for
from strategies.lab.budget import InMemoryBudget
from strategies.runner import run_strategy
from strategies.spec import TTCSpec
from tests.strategies.fakes import ScriptedGenerator


class SyncRouter:
    """The router's real interface: a blocking `difficulty(prompt, model_name)`."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def difficulty(self, prompt: str, model_name: str) -> float:
        self.asked.append((prompt, model_name))
        return 0.9 if "distance" in prompt else 0.2


async def test_scale_rates_sub_problems_with_the_routers_difficulty() -> None:
    decomposition = json.dumps({"subproblems": [{"question": "Total distance?"}, {"question": "Average speed?"}]})
    generator = ScriptedGenerator({"decompose": [decomposition], "system1": ["120"], "system2": ["40"] * 3,
                                   "synthesize": ["\\boxed{40}"]})
    router = SyncRouter()
    spec = TTCSpec(strategy="scale", cheap_model="small", strong_model="big", hard_n=3)
    result = await run_strategy([{"role": "user", "content": "Average speed?"}], spec, generator=generator,
                                budget=InMemoryBudget(), params={"max_tokens": 20}, difficulty_fn=difficulty_fn_for(router, "big"))
    assert router.asked == [("Total distance?", "big"), ("Average speed?", "big")]
    assert [step["hard"] for step in result.meta["steps"]] == [False, True]
