from strategies.lab.budget import InMemoryBudget
from strategies.refine import critique_accepts
from strategies.runner import run_strategy
from strategies.spec import TTCSpec

from .fakes import ScriptedGenerator

MSGS = [{"role": "user", "content": "Prove it."}]
PARAMS = {"max_tokens": 20}


def test_critique_verdicts() -> None:
    assert critique_accepts("VERDICT: ACCEPT\nLooks right.")
    assert critique_accepts("**Verdict:** accept")
    assert not critique_accepts("VERDICT: REVISE step 2 is wrong")
    assert not critique_accepts("I cannot accept this; revise step 3")
    assert not critique_accepts("Hmm.")


async def test_stops_when_critique_accepts() -> None:
    gen = ScriptedGenerator({"draft": ["v1"], "critique": ["VERDICT: REVISE bad", "VERDICT: ACCEPT"],
                             "revise": ["v2"]})
    res = await run_strategy(MSGS, TTCSpec(strategy="refine", rounds=4), generator=gen, budget=InMemoryBudget(),
                             params=PARAMS)
    assert gen.roles() == ["draft", "critique", "revise", "critique"]
    assert res.text == "v2" and res.meta == {"rounds_run": 2, "accepted": True}
    assert not res.strategy.degraded and res.strategy.n == 4
    # the revision sees the draft and the critique
    revise_msgs = gen.calls[2].messages
    assert revise_msgs[-2] == {"role": "assistant", "content": "v1"} and "bad" in revise_msgs[-1]["content"]


async def test_runs_all_rounds_without_acceptance_and_uses_round_models() -> None:
    gen = ScriptedGenerator({"draft": ["v1"], "critique": ["VERDICT: REVISE"], "revise": ["v2", "v3"]})
    spec = TTCSpec(strategy="refine", rounds=2, draft_model="small", critique_model="big",
                   round_models=[{}, {"critique": "huge", "revise": "mid"}])
    res = await run_strategy(MSGS, spec, generator=gen, budget=InMemoryBudget(), params=PARAMS)
    assert res.text == "v3" and res.meta == {"rounds_run": 2, "accepted": False}
    assert [(c.role, c.model) for c in gen.calls] == [
        ("draft", "small"), ("critique", "big"), ("revise", None), ("critique", "huge"), ("revise", "mid")]
