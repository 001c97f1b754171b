"""Outcome rows: the router's lab writes them, the strategies' lab reads the same file."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.outcomes import OutcomeFileError, OutcomeRow, read_outcomes, write_outcomes


def test_round_trip_and_unknown_columns(tmp_path: Path) -> None:
    rows = [OutcomeRow(prompt="2+2?", model="small", score=1.0, response="#### 4", prompt_tokens=3),
            OutcomeRow(prompt="2+3?", model="small", score=0.0)]
    path = tmp_path / "rows.jsonl"
    assert write_outcomes(path, rows) == 2
    assert "null" not in path.read_text()  # absent fields are omitted, not written as null
    assert read_outcomes(path) == rows
    path.write_text('{"prompt": "p", "model": "m", "score": 0.5, "my_column": 7}\n\n')
    assert read_outcomes(path) == [OutcomeRow(prompt="p", model="m", score=0.5)]


def test_a_bad_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"prompt": "p", "model": "m", "score": 0.5}\n{"prompt": "p", "model": "m", "score": 2}\n')
    with pytest.raises(OutcomeFileError, match=r"rows.jsonl:2: not an outcome row"):
        read_outcomes(path)


def test_the_router_lab_reexports_the_contract() -> None:
    import router.lab.outcomes as lab

    assert lab.OutcomeRow is OutcomeRow and lab.read_outcomes is read_outcomes
