import json
from pathlib import Path

import pytest

from strategies.base import Completion
from strategies.lab.convert import TOKENIZER, convert_file, load_cl100k
from strategies.lab.replay import ReplayExhausted, ReplayGenerator, ReplayProblem, load_replay

MSGS = [{"role": "user", "content": "p1"}]


def problem(n: int = 6) -> ReplayProblem:
    return ReplayProblem.model_validate({
        "id": 1, "prompt": "p1", "gold": "3",
        "samples": [{"answer": str(i), "correct": i == 3, "prompt_tokens": 5, "completion_tokens": 10 + i,
                     "score": float(i)} for i in range(n)],
    })


async def draw_all(seed: int, n: int = 6) -> list[Completion]:
    gen = ReplayGenerator([problem(n)], seed=seed)
    out = await gen.generate(MSGS, 2) + await gen.generate(MSGS, 1) + await gen.generate(MSGS, n - 3)
    with pytest.raises(ReplayExhausted):
        await gen.generate(MSGS, 1)
    return out


async def test_draws_without_replacement_and_seeded() -> None:
    a = await draw_all(0)
    assert sorted(c.answer for c in a) == [str(i) for i in range(6)]  # type: ignore[type-var]
    assert [c.answer for c in a] == [c.answer for c in await draw_all(0)]
    orders = {tuple(c.answer for c in await draw_all(s)) for s in range(6)}
    assert len(orders) > 1


async def test_generator_exposes_answer_and_score_but_not_correctness() -> None:
    gen = ReplayGenerator([problem()], seed=0)
    [c] = await gen.generate(MSGS, 1)
    assert c.answer is not None and c.score == float(c.answer)
    assert "correct" not in Completion.__dataclass_fields__ and c.completion_tokens == 10 + int(c.answer)
    assert c.cost_usd == pytest.approx((5 + c.completion_tokens) * 1e-6)
    assert gen.is_correct(c) == (c.answer == "3")
    assert gen.verifier()(MSGS, c) == (c.answer == "3")
    assert gen.estimate_cost(MSGS, 2, max_tokens=None) >= 2 * (5 + 15) * 1e-6


async def test_non_sampling_roles_are_refused() -> None:
    from strategies.base import StrategyError

    with pytest.raises(StrategyError):
        await ReplayGenerator([problem()]).generate(MSGS, 1, role="judge")


def test_load_replay_reports_bad_lines(tmp_path: Path) -> None:
    f = tmp_path / "r.jsonl"
    f.write_text(json.dumps(problem().model_dump()) + "\n" + '{"id": 2, "prompt": "x"}\n')
    with pytest.raises(ValueError, match="r.jsonl:2"):
        load_replay(f)


def test_convert_math_cot_counts_tokens_with_cl100k(tmp_path: Path) -> None:
    row = {"idx": 7, "question": "What is $1+1$?", "gt": "2", "system": "Reason step by step.",
           "code": ["We add: $1+1=\\boxed{2}$.", "It is \\boxed{3}"], "pred": ["2", "3"],
           "score": [True, False], "pred_score": [[1.5], [-0.5]]}
    src = tmp_path / "src.jsonl"
    src.write_text(json.dumps(row) + "\n")
    assert convert_file(src, tmp_path / "out.jsonl") == 1
    [p] = load_replay(tmp_path / "out.jsonl")
    enc = load_cl100k()
    assert enc.name == "cl100k_base" and "cl100k_base" in TOKENIZER
    assert p.id == "7" and p.gold == "2" and [s.correct for s in p.samples] == [True, False]
    assert p.samples[0].completion_tokens == len(enc.encode(row["code"][0]))
    assert p.samples[0].prompt_tokens == len(enc.encode("Reason step by step.")) + len(enc.encode("What is $1+1$?")) + 9
    assert [s.score for s in p.samples] == [1.5, -0.5]
