"""Live recording/evaluation logic over the Generator interface (scripted generator here)."""

import json
from pathlib import Path

from strategies.lab.live import Prompt, evaluate_live, grade, load_prompts, load_shots, record
from strategies.lab.replay import load_replay
from strategies.spec import TTCSpec

from .fakes import ScriptedGenerator


def test_load_prompts_understands_gsm8k_and_svamp(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text(
        json.dumps({"question": "Q1?", "answer": "steps\n#### 1,234"}) + "\n"
        + json.dumps({"idx": 9, "body": "Tom has 3.", "question": "How many?", "answer": "3"}) + "\n"
    )
    a, b = load_prompts(f)
    assert (a.id, a.prompt, a.gold) == ("0", "Q1?", "1,234")
    assert (b.id, b.prompt, b.gold) == ("9", "Tom has 3. How many?", "3")
    assert grade("1234", a.gold) and not grade("12", a.gold) and grade(None, None) is None


async def test_record_writes_a_replay_file(tmp_path: Path) -> None:
    gen = ScriptedGenerator({"sample": ["so #### 4", "I think 5", "\\boxed{4}"]}, native_n=False)
    out = tmp_path / "rec.jsonl"
    n = await record(gen, [Prompt("a", "2+2?", "4"), Prompt("b", "1+1?", None)], 3, out)
    assert n == 2 and [c.n for c in gen.calls] == [1] * 6
    a, b = load_replay(out)
    assert [s.answer for s in a.samples] == ["4", "5", "4"]
    assert [s.correct for s in a.samples] == [True, False, True]
    assert all(s.correct is None for s in b.samples)
    assert all(s.completion_tokens == 20 and s.prompt_tokens == 10 for s in a.samples)
    assert gen.calls[0].params["temperature"] == 0.7


async def test_evaluate_live_runs_any_strategy_and_grades_against_gold() -> None:
    gen = ScriptedGenerator({"draft": ["\\boxed{5}"], "critique": ["VERDICT: REVISE"], "revise": ["\\boxed{4}"]})
    res = await evaluate_live(gen, [Prompt("a", "2+2?", "4")], TTCSpec(strategy="refine", rounds=1),
                              params={"max_tokens": 20})
    assert res.summary() == {"strategy": "refine", "accuracy": 1.0, "mean_completion_tokens": 60.0,
                             "mean_calls": 3.0, "seeds": 1}


def test_load_prompts_understands_svamp_and_mawps_as_shipped(tmp_path: Path) -> None:
    # The shared files' own spellings: SVAMP capitalizes its keys and stores floats,
    # MAWPS calls the problem `input` and the answer `target`.
    f = tmp_path / "p.jsonl"
    f.write_text(
        json.dumps({"Answer": 145.0, "Question": "How big is each group?", "Body": "There are 290 bananas in 2 groups",
                    "ID": "chal-777", "idx": 0}) + "\n"
        + json.dumps({"input": "Joan had 70 shells and has 27 left. How many did she give away ?", "target": 43.0,
                      "type": "singleeq", "idx": 5}) + "\n"
        + json.dumps({"input": "Half of 5 ?", "target": 2.5, "idx": 6}) + "\n"
    )
    svamp, mawps, half = load_prompts(f)
    assert (svamp.id, svamp.prompt, svamp.gold) == ("chal-777", "There are 290 bananas in 2 groups. How big is each group?", "145")
    assert (mawps.id, mawps.gold) == ("5", "43") and mawps.prompt.startswith("Joan had 70")
    assert half.gold == "2.5" and grade("2.50", half.gold) and grade("145", svamp.gold)
    wrapped = load_prompts(f, limit=1, template="Q: {question}\nA:")
    assert len(wrapped) == 1 and wrapped[0].prompt.startswith("Q: There are 290") and wrapped[0].prompt.endswith("\nA:")


def test_load_prompts_rejects_rows_without_a_problem(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"Answer": 1}) + "\n")
    import pytest

    with pytest.raises(ValueError, match="p.jsonl:1"):
        load_prompts(f)


async def test_record_appends_as_it_goes_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "rec.jsonl"
    prompts = [Prompt("a", "2+2?", "4"), Prompt("b", "1+1?", "2"), Prompt("c", "3+3?", "6")]
    seen: list[int] = []
    gen = ScriptedGenerator({"sample": ["The answer is 4."]}, native_n=False)
    await record(gen, prompts[:2], 2, out, progress=lambda n, p: seen.append(len(out.read_text().splitlines())))
    assert seen == [1, 2]  # each problem is on disk before the next one starts
    # A run killed mid-write leaves a torn line: resume drops it and records the rest.
    out.write_text(out.read_text() + '{"id": "c", "prompt"')
    gen2 = ScriptedGenerator({"sample": ["The answer is 6."]}, native_n=False)
    n = await record(gen2, prompts, 2, out, resume=True, extractor="final_number")
    assert n == 3 and len(gen2.calls) == 2  # only "c" was sampled again
    assert [p.id for p in load_replay(out)] == ["a", "b", "c"]
    assert [s.correct for s in load_replay(out)[2].samples] == [True, True]


async def test_record_sends_few_shot_turns_before_the_question(tmp_path: Path) -> None:
    shots_file = tmp_path / "shots.jsonl"
    shots_file.write_text(json.dumps({"question": "1+2?", "answer": "The answer is 3."}) + "\n")
    shots = load_shots(shots_file)
    gen = ScriptedGenerator({"sample": ["The answer is 4."]}, native_n=False)
    await record(gen, [Prompt("a", "2+2?", "4")], 1, tmp_path / "r.jsonl", shots=shots, system="Be brief.",
                 params={"max_tokens": 32, "stop": ["\n\n"]})
    msgs = gen.calls[0].messages
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[1]["content"] == "1+2?" and msgs[-1]["content"] == "2+2?"
    assert gen.calls[0].params["max_tokens"] == 32 and gen.calls[0].params["stop"] == ["\n\n"]
