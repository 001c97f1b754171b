"""Build outcome data for your own models: run, grade, write rows.

The completion call is injected, so this module never imports the gateway
(dependencies point one way). The gateway wires its upstream layer in; tests
pass a fake. The callable's contract::

    async def complete(model: str, messages: list[dict[str, str]], max_tokens: int) -> CompletionOutcome
        # CompletionOutcome(text: str, prompt_tokens: int, completion_tokens: int, cost_usd: float)
        # Raise any exception for a failed call: it is counted and the row is skipped.

Budget cap: before each call the collector reserves that model's running mean
cost (or `reserve_usd` before the first result) against `budget_usd`, and
settles on the reported cost. No call starts once the reservations would pass
the cap, so overspend is bounded by the estimate error of in-flight calls.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from contracts.outcomes import OutcomeRow
from router.lab.graders import Grader


class CompletionOutcome(BaseModel):
    text: str
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    cost_usd: float = Field(ge=0.0)


Complete = Callable[[str, list[dict[str, str]], int], Awaitable[CompletionOutcome]]


class LabeledPrompt(BaseModel):
    prompt: str = Field(min_length=1)
    answer: str
    task: str | None = None
    id: str | None = None


class CollectReport(BaseModel):
    rows: list[OutcomeRow]
    spent_usd: float
    calls: int
    failed: int
    skipped_for_budget: int


_PROMPT_KEYS = ("prompt", "question", "query", "problem")
_ANSWER_KEYS = ("answer", "ground_truth", "gt", "Answer", "solution")


def load_labeled_prompts(path: Path, limit: int | None = None) -> list[LabeledPrompt]:
    """JSONL with a prompt (`prompt|question|query|problem`) and a reference answer.

    SVAMP-style rows (`Body` + `Question`) are joined into one prompt.
    """
    out: list[LabeledPrompt] = []
    with Path(path).open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            rec: dict[str, Any] = json.loads(line)
            if "Body" in rec and "Question" in rec:
                rec["prompt"] = f"{rec['Body'].strip()} {rec['Question'].strip()}"
            prompt = next((rec[k] for k in _PROMPT_KEYS if k in rec), None)
            answer = next((rec[k] for k in _ANSWER_KEYS if k in rec), None)
            if prompt is None or answer is None:
                raise ValueError(f"{path}:{line_no}: need a prompt field {_PROMPT_KEYS} and an answer field {_ANSWER_KEYS}")
            out.append(LabeledPrompt(prompt=str(prompt), answer=str(answer), task=rec.get("task"),
                                     id=str(rec.get("id", rec.get("ID", line_no)))))
            if limit is not None and len(out) >= limit:
                break
    return out


class _Budget:
    def __init__(self, cap: float | None, reserve: float) -> None:
        self.cap = cap
        self.reserve = reserve
        self.spent = 0.0
        self.held = 0.0
        self.mean: dict[str, tuple[float, int]] = {}

    def estimate(self, model: str) -> float:
        total, n = self.mean.get(model, (0.0, 0))
        return total / n if n else self.reserve

    def try_hold(self, model: str) -> float | None:
        est = self.estimate(model)
        if self.cap is not None and self.spent + self.held + est > self.cap:
            return None
        self.held += est
        return est

    def settle(self, model: str, held: float, actual: float | None) -> None:
        self.held -= held
        if actual is not None:
            self.spent += actual
            total, n = self.mean.get(model, (0.0, 0))
            self.mean[model] = (total + actual, n + 1)


async def collect(
    prompts: Sequence[LabeledPrompt],
    models: Sequence[str],
    complete: Complete,
    grader: Grader,
    *,
    concurrency: int = 4,
    budget_usd: float | None = None,
    reserve_usd: float = 0.0,
    max_tokens: int = 512,
    system_prompt: str | None = None,
    progress: bool = True,
) -> CollectReport:
    """Run every model on every prompt (up to the budget) and grade the answers."""
    budget = _Budget(budget_usd, reserve_usd)
    sem = asyncio.Semaphore(max(1, concurrency))
    rows: list[OutcomeRow | None] = []
    counters = {"calls": 0, "failed": 0, "skipped": 0}
    jobs = [(p, m) for p in prompts for m in models]
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="collect", unit="call")

    async def one(item: LabeledPrompt, model: str) -> OutcomeRow | None:
        async with sem:
            held = budget.try_hold(model)
            if held is None:
                counters["skipped"] += 1
                if bar is not None:
                    bar.update(1)
                return None
            messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
                {"role": "user", "content": item.prompt}
            ]
            counters["calls"] += 1
            try:
                result = await complete(model, messages, max_tokens)
            except Exception:  # noqa: BLE001 - any upstream failure skips just this row
                budget.settle(model, held, None)
                counters["failed"] += 1
                return None
            finally:
                if bar is not None:
                    bar.update(1)
            budget.settle(model, held, result.cost_usd)
            return OutcomeRow(
                prompt=item.prompt, model=model, score=grader(result.text, item.answer), task=item.task,
                prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
                cost_usd=result.cost_usd, id=item.id, response=result.text,
            )

    try:
        rows = await asyncio.gather(*(one(p, m) for p, m in jobs))
    finally:
        if bar is not None:
            bar.close()
    return CollectReport(
        rows=[r for r in rows if r is not None], spent_usd=budget.spent, calls=counters["calls"],
        failed=counters["failed"], skipped_for_budget=counters["skipped"],
    )
