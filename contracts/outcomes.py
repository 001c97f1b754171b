"""Outcome rows: graded answers, one JSON object per line, one line per (prompt, model)::

    {"prompt": str, "model": str, "score": float in [0, 1],
     "task": str?, "prompt_tokens": int?, "completion_tokens": int?,
     "cost_usd": float?, "id": str?, "response": str?,
     "source": "gold" | "feedback" | "judge"?, "judge": str?}

The router's lab writes them (`import`, `collect`) and trains and evaluates on them; the
strategies' lab fits the cascade's escalation model on the same files (it needs `response`).
Both read them here, so a file one side writes is a file the other side accepts.

`score` is 1 for a correct answer and 0 for a wrong one; fractional scores (F1, BLEU, partial
credit) are allowed. Token counts and cost are optional because some public sources lack
them; training then falls back to a price map. `response` is the model's answer text, where
the source recorded it: routers never read it (they decide before any model answers), but a
cascade's escalation model learns from it whether an answer looks right.

`source` says where a score came from when rows are made from your own traffic (`ttc router
label`): a gold-labelled answer, a user's feedback (`POST /v1/feedback`), or a judge model, named
in `judge`. Training weighs rows by source; no source means a public or collected set, i.e. gold.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


Source = Literal["gold", "feedback", "judge"]


class OutcomeRow(BaseModel):
    """One model's graded answer to one prompt."""

    # Unknown keys are ignored rather than rejected so that users can keep
    # their own bookkeeping columns in the same file.
    model_config = ConfigDict(extra="ignore", frozen=True)

    prompt: str = Field(min_length=1)
    model: str = Field(min_length=1)
    score: float = Field(ge=0.0, le=1.0)
    task: str | None = None
    prompt_tokens: int | None = Field(default=None, ge=0)
    completion_tokens: int | None = Field(default=None, ge=0)
    cost_usd: float | None = Field(default=None, ge=0.0)
    id: str | None = None
    response: str | None = None
    source: Source | None = None
    judge: str | None = None


class OutcomeFileError(ValueError):
    """A line of an outcome file is not a valid outcome row; the message names the file and line."""


def read_outcomes(path: str | Path) -> list[OutcomeRow]:
    """Read and validate a JSONL outcome file; errors name the line."""
    return list(iter_outcomes(path))


def iter_outcomes(path: str | Path) -> Iterator[OutcomeRow]:
    with Path(path).open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield OutcomeRow.model_validate_json(line)
            except ValidationError as exc:
                raise OutcomeFileError(f"{path}:{line_no}: not an outcome row: {exc}") from exc


def write_outcomes(path: str | Path, rows: Iterable[OutcomeRow]) -> int:
    """Write rows as JSONL (None fields omitted); returns the row count."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with target.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(row.model_dump_json(exclude_none=True))
            handle.write("\n")
            count += 1
    return count
