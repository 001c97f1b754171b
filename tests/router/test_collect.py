"""collect over a fake async completion callable, and the graders."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from router.lab.cli import Models, make_app
from router.lab.collect import CompletionOutcome, LabeledPrompt, collect, load_labeled_prompts
from router.lab.graders import choice, contains, exact, numeric, resolve_grader


def test_numeric_grader_gsm8k_and_last_number() -> None:
    ref = "She has 16 - 3 - 4 = 9 eggs.\n#### 18"
    assert numeric("so the answer is\n#### 18", ref) == 1.0
    assert numeric("The total is $1,018.", "#### 1018") == 1.0
    assert numeric("I think 17, no wait, 18", ref) == 1.0
    assert numeric("It is 17.", ref) == 0.0
    assert numeric("The answer is \\boxed{2.5}", "2.5") == 1.0
    assert numeric("no number here", ref) == 0.0
    assert numeric("#### -3", "-3") == 1.0
    # Where the router's old copy disagreed with the strategies' reader: the answer a model
    # states, not its trailing chatter; a nested \frac in the box; a fraction reference.
    assert numeric("The answer is 11. Then 3 more people came.", "#### 11") == 1.0
    assert numeric("so \\boxed{\\frac{1}{2}}", "0.5") == 1.0
    assert numeric("x = 0.333333", "1/3") == 1.0


def test_choice_exact_contains() -> None:
    assert choice("The answer is (C).", "C") == 1.0
    assert choice("Answer: B", "C") == 0.0
    assert choice("\\boxed{D}", "D") == 1.0
    assert exact("  Paris. ", "paris") == 1.0
    assert exact("Paris, France", "paris") == 0.0
    assert contains("It is Paris, France", "paris") == 1.0


def test_user_callable_grader() -> None:
    grade = resolve_grader("tests.router.test_collect:length_grader")
    assert grade("abcd", "ab") == 0.5
    with pytest.raises(ValueError):
        resolve_grader("no_such_grader")


def length_grader(answer: str, reference: str) -> float:
    return len(reference) / len(answer)


class FakeUpstream:
    """Answers correctly for 'big', wrongly for 'small'; costs differ per model."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def __call__(self, model: str, messages: list[dict[str, str]], max_tokens: int) -> CompletionOutcome:
        self.calls.append((model, max_tokens))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.sleep(0.001)
        self.in_flight -= 1
        if "fail" in messages[-1]["content"]:
            raise RuntimeError("upstream 500")
        answer = "#### 4" if model == "big" else "#### 5"
        return CompletionOutcome(text=answer, prompt_tokens=10, completion_tokens=3,
                                 cost_usd=0.01 if model == "big" else 0.001)


async def test_collect_grades_and_records_costs() -> None:
    fake = FakeUpstream()
    prompts = [LabeledPrompt(prompt=f"2+2? #{i}", answer="#### 4", id=str(i)) for i in range(6)]
    prompts.append(LabeledPrompt(prompt="please fail", answer="#### 4"))
    report = await collect(prompts, ["big", "small"], fake, numeric, concurrency=3, max_tokens=64, progress=False)
    assert report.failed == 2 and report.calls == 14
    assert fake.max_in_flight <= 3
    assert {r.model: r.score for r in report.rows} == {"big": 1.0, "small": 0.0}
    assert {r.model: r.response for r in report.rows} == {"big": "#### 4", "small": "#### 5"}
    assert len(report.rows) == 12
    assert report.spent_usd == pytest.approx(6 * 0.011)
    assert all(r.prompt_tokens == 10 and r.completion_tokens == 3 for r in report.rows)
    assert {t for _, t in fake.calls} == {64}


async def test_collect_stops_at_budget() -> None:
    fake = FakeUpstream()
    prompts = [LabeledPrompt(prompt=f"q{i}", answer="4") for i in range(20)]
    report = await collect(prompts, ["big"], fake, numeric, concurrency=1, budget_usd=0.05, reserve_usd=0.01,
                           progress=False)
    assert report.spent_usd <= 0.05 + 1e-12
    assert len(report.rows) == 5 and report.skipped_for_budget == 15


def test_load_labeled_prompts_formats(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join([
        json.dumps({"question": "2+2?", "answer": "#### 4"}),
        json.dumps({"Body": "Tom has 3 apples.", "Question": "How many?", "Answer": 3.0, "ID": "s1"}),
    ]) + "\n")
    items = load_labeled_prompts(path)
    assert [i.prompt for i in items] == ["2+2?", "Tom has 3 apples. How many?"]
    assert items[1].answer == "3.0" and items[1].id == "s1"


class FakeBackend:
    """router.lab.cli.RouterBackend over FakeUpstream, standing in for the gateway's."""

    def __init__(self) -> None:
        self.opened: list[Path] = []

    def open_models(self, config: Path) -> Models:
        if not config.exists():
            raise ValueError(f"config {config} not found")
        self.opened.append(config)
        return Models(complete=FakeUpstream(), chat_models=("big", "small"))


def _prompts(tmp_path: Path) -> Path:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"question": f"2+2? ({i})", "answer": "#### 4"}) + "\n" for i in range(3)))
    return prompts


def test_collect_cli_writes_outcome_rows_through_the_backend(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from contracts.outcomes import read_outcomes

    backend = FakeBackend()
    config = tmp_path / "config.yaml"
    config.write_text("models: []\n")
    out = tmp_path / "o.jsonl"
    res = CliRunner().invoke(make_app(backend), ["collect", "--config", str(config), "--prompts", str(_prompts(tmp_path)),
                                                 "--out", str(out), "--grader", "numeric"])
    assert res.exit_code == 0, res.output
    assert backend.opened == [config]
    rows = read_outcomes(out)
    assert len(rows) == 6  # every chat model by default
    assert sorted({(r.model, r.score) for r in rows}) == [("big", 1.0), ("small", 0.0)]
    res = CliRunner().invoke(make_app(backend), ["collect", "--config", str(config), "--prompts", str(_prompts(tmp_path)),
                                                 "--out", str(out), "--models", "big,huge"])
    assert res.exit_code == 2 and "huge" in res.output
    res = CliRunner().invoke(make_app(backend), ["collect", "--config", str(tmp_path / "nope.yaml"), "--prompts",
                                                 str(_prompts(tmp_path)), "--out", str(out)])
    assert res.exit_code == 2 and "not found" in res.output


def test_collect_without_a_backend_says_where_to_run_it(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    out = tmp_path / "o.jsonl"
    res = CliRunner().invoke(make_app(), ["collect", "--config", str(tmp_path / "c.yaml"), "--prompts",
                                          str(_prompts(tmp_path)), "--out", str(out)])
    assert res.exit_code == 2 and "ttc router collect" in res.output
    assert not out.exists()
