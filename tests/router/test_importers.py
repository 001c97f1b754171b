"""Each importer on the real shared files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contracts.outcomes import OutcomeRow, read_outcomes
from router.lab.importers import SOURCES, read_prices, run_import
from router.lab.importers.base import split_by_prompt
from router.lab.outcomes import prompt_key
from router.tokens import DEFAULT_COMPLETION_TOKENS

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
pytestmark = pytest.mark.skipif(not DATA.exists(), reason="shared data not mounted")


def _load(out: Path) -> tuple[list[OutcomeRow], list[OutcomeRow]]:
    return read_outcomes(out / "train.jsonl"), read_outcomes(out / "test.jsonl")


def _assert_disjoint(train: list[OutcomeRow], test: list[OutcomeRow]) -> None:
    assert {prompt_key(r.prompt) for r in train}.isdisjoint({prompt_key(r.prompt) for r in test})


def test_gsm8k_drops_contaminated_and_counts_response_tokens(tmp_path: Path) -> None:
    result = run_import("routellm-gsm8k", DATA, tmp_path, seed=3, max_prompts=200)
    assert result.dropped["contaminated"] == 12
    train, test = _load(tmp_path)
    _assert_disjoint(train, test)
    contaminated = {prompt_key(json.loads(line)["eval_prompt"])
                    for line in (DATA / "routellm/gsm8k_contaminated_prompts.jsonl").read_text().splitlines() if line}
    assert not contaminated & {prompt_key(r.prompt) for r in train + test}
    assert len({r.prompt for r in train + test}) == 200
    # Completion tokens come from the recorded responses, so they vary.
    assert len({r.completion_tokens for r in train}) > 20
    assert all(r.cost_usd and r.cost_usd > 0 and r.prompt_tokens for r in train)
    # The recorded answers travel with the rows (a cascade's escalation model learns from them).
    assert all(r.response for r in train + test)
    assert any("####" in (r.response or "") for r in train if r.model.startswith("mistralai/"))
    assert set(read_prices(tmp_path / "prices.json")) == {r.model for r in train}


def test_mmlu_dedups_repeated_prompts_and_defaults_to_256(tmp_path: Path) -> None:
    result = run_import("routellm-mmlu", DATA, tmp_path, seed=0, max_prompts=300)
    assert result.dropped["contaminated"] == 5
    assert result.dropped["duplicate_rows_merged"] > 0
    train, test = _load(tmp_path)
    _assert_disjoint(train, test)
    keys = [(prompt_key(r.prompt), r.model) for r in train + test]
    assert len(keys) == len(set(keys))
    assert {r.completion_tokens for r in train} == {DEFAULT_COMPLETION_TOKENS}
    assert all(r.task and r.task.startswith("mmlu/") for r in train)
    assert not any(r.response for r in train)


def test_llmrouter_joins_tasks_and_prices(tmp_path: Path) -> None:
    run_import("llmrouter", DATA, tmp_path, seed=1, max_prompts=150, test_fraction=0.3)
    train, test = _load(tmp_path)
    _assert_disjoint(train, test)
    assert len({r.model for r in train}) == 9
    assert all(r.task for r in train)
    prices = read_prices(tmp_path / "prices.json")
    gemma = next(r for r in train if r.model == "gemma-2-9b-it")
    expected = (gemma.prompt_tokens * prices["gemma-2-9b-it"].input_per_1m + 256 * prices["gemma-2-9b-it"].output_per_1m) / 1e6
    assert gemma.cost_usd == pytest.approx(expected)
    assert abs(len({r.prompt for r in test}) / 150 - 0.3) < 0.02


def test_routerarena_uses_recorded_tokens(tmp_path: Path) -> None:
    run_import("routerarena", DATA, tmp_path, seed=0, max_prompts=100)
    train, test = _load(tmp_path)
    _assert_disjoint(train, test)
    first = json.loads((DATA / "routerarena/gemini-2.0-flash-001.jsonl").read_text().splitlines()[0])
    match = [r for r in train + test if r.prompt == first["question"] and r.model == "gemini-2.0-flash-001"]
    if match:
        assert match[0].completion_tokens == first["token_usage"]["output_tokens"]
        assert match[0].response == first["generated_answer"]
    assert sum(bool(r.response) for r in train + test) > 0.9 * len(train + test)
    assert all(0.0 <= r.score <= 1.0 for r in train + test)
    assert {r.model for r in train} == {"claude-3-haiku-20240307", "gemini-2.0-flash-001"}


def test_split_keeps_every_prompt_on_one_side() -> None:
    rows = [OutcomeRow(prompt=f"p{i % 10}", model=f"m{j}", score=1.0) for i in range(10) for j in range(3)]
    train, test = split_by_prompt(rows, 0.5, seed=0)
    _assert_disjoint(train, test)
    assert len(train) + len(test) == 30 and len(test) == 15


def test_unknown_source_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown source"):
        run_import("nope", DATA, tmp_path)
    assert set(SOURCES) == {"routellm-gsm8k", "routellm-mmlu", "llmrouter", "routerarena"}
