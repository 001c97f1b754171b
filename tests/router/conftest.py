from __future__ import annotations

from pathlib import Path

import pytest

from contracts.outcomes import OutcomeRow, read_outcomes
from router.lab.importers import run_import

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture(scope="session")
def gsm8k_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 160-prompt RouteLLM GSM8K split (real data), shared by the tests."""
    if not DATA.exists():
        pytest.skip("shared data not mounted")
    out = tmp_path_factory.mktemp("gsm8k")
    run_import("routellm-gsm8k", DATA, out, seed=0, max_prompts=160)
    return out


@pytest.fixture(scope="session")
def gsm8k_rows(gsm8k_split: Path) -> tuple[list[OutcomeRow], list[OutcomeRow]]:
    return read_outcomes(gsm8k_split / "train.jsonl"), read_outcomes(gsm8k_split / "test.jsonl")
