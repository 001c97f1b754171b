"""`cascade` and its escalation model: features by hand, fit, round trip, and the strategy's decisions."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from strategies.base import StrategyError
from strategies.lab.budget import InMemoryBudget
from strategies.escalation import (
    FEATURES,
    EscalationModel,
    answer_features,
)
from strategies.lab.fit_escalation import fit_escalation
from strategies.runner import run_strategy
from strategies.spec import TTCSpec

from .fakes import ScriptedGenerator, TracingBudget

PROMPT = "Tom has 3 apples and buys 4 more. How many apples does he have?"
RIGHT = "Tom has 3 + 4 = <<3+4=7>>7 apples.\n#### 7"
WRONG = "Tom has 3 * 4 = 13 apples.\n#### 13"
ECHO = "He has 4 apples."
MSGS = [{"role": "user", "content": PROMPT}]


def features(text: str) -> dict[str, float]:
    return dict(zip(FEATURES, answer_features(PROMPT, text), strict=True))


def test_answer_features_by_hand() -> None:
    right, wrong, echo = features(RIGHT), features(WRONG), features(ECHO)
    assert (right["check_ok"], right["check_bad"], right["check_none"]) == (1.0, 0.0, 0.0)
    assert right["final_marker"] == 1.0 and right["whole_number"] == 1.0 and right["echoes_prompt_number"] == 0.0
    assert right["log_calc_steps"] > 0 and right["log_lines"] > 0
    assert (wrong["check_ok"], wrong["check_bad"]) == (0.0, 1.0)  # 3 * 4 is not 13
    assert (echo["check_none"], echo["echoes_prompt_number"], echo["final_marker"]) == (1.0, 1.0, 0.0)
    assert features("It is -2, however you round it.")["negative"] == 1.0
    assert features("It is -2, however you round it.")["log_hedges"] > 0


def synthetic(n: int = 200, seed: int = 0) -> tuple[list[str], list[str], list[float]]:
    """Answers whose checked arithmetic predicts correctness 80/20, as on real weak-model answers."""
    rng = random.Random(seed)
    texts, right = [], []
    for _ in range(n):
        looks_right = rng.random() < 0.5
        texts.append(RIGHT if looks_right else WRONG)
        right.append(float(rng.random() < (0.8 if looks_right else 0.2)))
    return [f"{PROMPT} Case {case(i)}." for i in range(n)], texts, right


def case(i: int) -> str:
    """A distinct tag per prompt without adding numbers to it."""
    return "".join(chr(ord("a") + int(d)) for d in str(i))


def fitted(priors: list[float] | None = None) -> EscalationModel:
    prompts, texts, right = synthetic()
    return fit_escalation(prompts, texts, right, model="small", priors=priors)


def test_fit_learns_that_checked_answers_are_right_more_often(tmp_path: Path) -> None:
    model = fitted()
    assert model.p_right(PROMPT, RIGHT) > 0.7 and model.p_right(PROMPT, WRONG) < 0.3
    assert 0.7 < model.cv["auc"] <= 1.0 and model.cv["n"] == 200 and not model.uses_prior
    model.save(tmp_path / "e.json")
    again = EscalationModel.load(tmp_path / "e.json")
    assert again == model and again.p_right(PROMPT, WRONG) == model.p_right(PROMPT, WRONG)


def test_prior_is_a_feature_when_fitted_with_one() -> None:
    prompts, texts, right = synthetic()
    # A prior that knows something beyond the answer: it tracks the label with noise.
    rng = random.Random(1)
    priors = [min(max(0.5 + (0.3 if r else -0.3) + rng.uniform(-0.2, 0.2), 0.01), 0.99) for r in right]
    model = fit_escalation(prompts, texts, right, model="small", priors=priors)
    assert model.uses_prior and model.default_prior == pytest.approx(sum(priors) / len(priors))
    assert model.p_right(PROMPT, WRONG, 0.9) > model.p_right(PROMPT, WRONG, 0.1)
    assert model.p_right(PROMPT, WRONG, None) == pytest.approx(model.p_right(PROMPT, WRONG, model.default_prior))


def test_fit_and_load_refuse_what_they_cannot_use(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="right and"):
        fit_escalation([PROMPT] * 20, [RIGHT] * 20, [1.0] * 20, model="small")
    with pytest.raises(ValueError, match="or more prompts"):  # 40 answers but only 2 prompts: no 5 folds
        fit_escalation([PROMPT, PROMPT + "?"] * 20, [RIGHT, WRONG] * 20, [1.0, 0.0] * 20, model="small")
    with pytest.raises(ValueError, match="one entry per answer"):
        fit_escalation([PROMPT] * 3, [RIGHT] * 2, [1.0] * 3, model="small")
    obj = fitted().to_json()
    (tmp_path / "bad.json").write_text(json.dumps({**obj, "version": 99}))
    with pytest.raises(ValueError, match="ttc-escalation v1"):
        EscalationModel.load(tmp_path / "bad.json")
    width = len(FEATURES)
    doubled = [*FEATURES, "prior_logit", "prior_logit"]
    bad_files = {
        "are not this version's": {**obj, "features": ["check_ok"]},
        "are not this version": {**obj, "features": doubled, "mean": [0.0] * (width + 2), "scale": [1.0] * (width + 2),
                                  "coef": [0.0] * (width + 2)},
        "must each hold": {**obj, "coef": [0.0] * (width - 1)},
        "finite, and every scale positive": {**obj, "scale": [0.0] * width},
        "lacks \\['coef'\\]": {k: v for k, v in obj.items() if k != "coef"},
    }
    for message, bad in bad_files.items():
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=message):
            EscalationModel.load(tmp_path / "bad.json")
    (tmp_path / "bad.json").write_text(json.dumps({**obj, "intercept": float("nan")}))
    with pytest.raises(ValueError, match="finite"):
        EscalationModel.load(tmp_path / "bad.json")


def test_extreme_answers_are_scored_not_crashed_on() -> None:
    model = fitted()
    looping = "The answer is " + "9" * 400  # parses to inf
    assert features(looping)["whole_number"] == 0.0 and features(looping)["negative"] == 0.0
    assert 0.0 <= model.p_right(PROMPT, looping) <= 1.0
    extreme = EscalationModel(model="small", features=list(FEATURES), mean=[0.0] * len(FEATURES),
                              scale=[0.01] * len(FEATURES), coef=[-10.0] * len(FEATURES), intercept=0.0)
    assert extreme.p_right(PROMPT, RIGHT * 50) == pytest.approx(0.0, abs=1e-12)  # z far below exp's range


async def cascade(draft: str, budget: InMemoryBudget | None = None, **spec: object):  # type: ignore[no-untyped-def]
    gen = ScriptedGenerator({"draft": [draft], "escalation": ["Seven: 3 + 4 = 7.\n#### 7"]})
    result = await run_strategy(
        MSGS, TTCSpec(strategy="cascade", cheap_model="small", strong_model="big", **spec),  # type: ignore[arg-type]
        generator=gen, budget=budget or InMemoryBudget(), params={"max_tokens": 50}, escalation=fitted())
    return result, gen


async def test_a_convincing_draft_is_kept_with_one_call() -> None:
    result, gen = await cascade(RIGHT)
    assert [(c.role, c.model) for c in gen.calls] == [("draft", "small")]
    assert result.text == RIGHT and result.strategy.name == "cascade" and result.strategy.n == 1
    decision = result.ttc_dict()["cascade"]
    assert decision["escalated"] is False and decision["first_model"] == "small" and decision["p_right"] > 0.5


async def test_a_doubtful_draft_escalates_and_both_calls_are_billed() -> None:
    budget = TracingBudget()
    result, gen = await cascade(WRONG, budget)
    assert [(c.role, c.model) for c in gen.calls] == [("draft", "small"), ("escalation", "big")]
    assert result.text.endswith("#### 7") and result.answer == "7"
    assert result.ttc_dict()["cascade"]["escalated"] is True and "escalated to big" in (result.strategy.reason or "")
    assert budget.spent_usd == pytest.approx(result.cost_usd) and len(result.calls) == 2
    assert [event for event, *_ in budget.trace] == ["reserve", "settle", "reserve", "settle"]


async def test_threshold_comes_from_the_spec() -> None:
    _, gen = await cascade(RIGHT, escalate_below=0.99)
    assert [c.role for c in gen.calls] == ["draft", "escalation"]
    _, gen = await cascade(WRONG, escalate_below=0.0)
    assert [c.role for c in gen.calls] == ["draft"]


async def test_no_room_for_the_strong_call_keeps_the_draft_flagged_degraded() -> None:
    gen = ScriptedGenerator({"draft": [WRONG], "escalation": ["#### 7"]})
    one_call = gen.estimate_cost(MSGS, 1, max_tokens=50) * 1.2  # the draft costs less than its estimate
    result, gen = await cascade(WRONG, InMemoryBudget(balance_usd=one_call))
    assert [c.role for c in gen.calls] == ["draft"] and result.text == WRONG
    assert result.strategy.degraded and result.ttc_dict()["cascade"]["escalated"] is False


async def test_misconfigured_cascade_is_a_strategy_error() -> None:
    gen = ScriptedGenerator({"draft": [RIGHT]})
    with pytest.raises(StrategyError, match="escalation model"):
        await run_strategy(MSGS, TTCSpec(strategy="cascade", strong_model="big"), generator=gen,
                           budget=InMemoryBudget(), params={})
    with pytest.raises(StrategyError, match="strong_model"):
        await run_strategy(MSGS, TTCSpec(strategy="cascade"), generator=gen, budget=InMemoryBudget(), params={},
                           escalation=fitted())
    assert gen.calls == []


async def test_no_escalation_when_the_routed_model_is_already_the_strong_one() -> None:
    gen = ScriptedGenerator({"draft": [WRONG]})  # unnamed model: the fake answers as "base", the routed model
    result = await run_strategy(MSGS, TTCSpec(strategy="cascade", strong_model="base", escalate_below=1.0),
                                generator=gen, budget=InMemoryBudget(), params={}, escalation=fitted())
    assert [c.role for c in gen.calls] == ["draft"] and result.ttc_dict()["cascade"]["escalated"] is False
    assert "nothing stronger" in (result.strategy.reason or "")


async def test_a_failed_escalation_keeps_the_paid_draft_flagged_degraded() -> None:
    def upstream_down(messages: object, index: int) -> str:
        raise RuntimeError("502 from the strong model")

    gen = ScriptedGenerator({"draft": [WRONG], "escalation": upstream_down})
    budget = InMemoryBudget()
    result = await run_strategy(MSGS, TTCSpec(strategy="cascade", cheap_model="small", strong_model="big"),
                                generator=gen, budget=budget, params={}, escalation=fitted())
    assert [(c.role, c.model) for c in gen.calls] == [("draft", "small"), ("escalation", "big")]
    assert result.text == WRONG and result.strategy.degraded and "RuntimeError" in (result.strategy.reason or "")
    assert result.ttc_dict()["cascade"]["escalated"] is False
    assert budget.spent_usd == pytest.approx(result.cost_usd) and len(result.calls) == 1
