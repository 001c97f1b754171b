"""Replay files and the ReplayGenerator: evaluate strategies without spending money.

Replay format, JSONL, one problem per line::

    {"id": ..., "prompt": "...", "gold": "...",
     "samples": [{"text"?: "...", "answer": "...", "correct"?: true,
                  "prompt_tokens": 120, "completion_tokens": 431, "score"?: 1.7}]}

`ReplayGenerator` serves a problem's recorded samples in a seeded random order,
without replacement, so one seed is one possible sequence of upstream draws.
It hands strategies only `text`, `answer` and `score`; `correct` and `gold`
stay inside it, reachable only through :meth:`ReplayGenerator.verifier` (which
stands for a real verifier such as unit tests) and :meth:`is_correct` (the
evaluation harness's grader).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contracts.answers import normalize_math
from contracts.prompts import prompt_text

from ..base import Completion, Message, StrategyError, Verifier


class ReplaySample(BaseModel):
    model_config = ConfigDict(extra="ignore")

    text: str | None = None
    answer: str | None = None  # None: no answer found (written files omit it)
    correct: bool | None = None
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    score: float | None = None


class ReplayProblem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    prompt: str
    gold: str | None = None
    samples: list[ReplaySample] = Field(min_length=1)

    @field_validator("id", mode="before")
    @classmethod
    def _id_str(cls, v: Any) -> str:
        return str(v)

    def sample_correct(self, j: int) -> bool | None:
        s = self.samples[j]
        if s.correct is not None:
            return s.correct
        if self.gold is None or s.answer is None:
            return None
        return normalize_math(s.answer) == normalize_math(self.gold)


def load_replay(path: str | Path) -> list[ReplayProblem]:
    problems = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    problems.append(ReplayProblem.model_validate_json(line))
                except ValueError as exc:
                    raise ValueError(f"{path}:{lineno}: not a replay record: {exc}") from None
    return problems


def write_replay(problems: Iterable[ReplayProblem], path: str | Path) -> int:
    n = 0
    with open(path, "w") as f:
        for p in problems:
            f.write(json.dumps(p.model_dump(exclude_none=True), ensure_ascii=False) + "\n")
            n += 1
    return n


class ReplayExhausted(Exception):
    """A strategy asked for more samples than the problem has recorded."""


SAMPLING_ROLES = frozenset({"sample", "system2"})


class ReplayGenerator:
    """A :class:`~strategies.base.Generator` over recorded samples.

    Prices are per token (defaults: $1 per million, in and out) so that budget
    behaviour can be replayed too. Only sampling calls can be replayed; judge,
    critique, decomposition... calls need live models.
    """

    def __init__(
        self,
        problems: Iterable[ReplayProblem],
        *,
        seed: int = 0,
        model: str = "replay",
        input_usd_per_token: float = 1e-6,
        output_usd_per_token: float = 1e-6,
    ) -> None:
        self.problems = {p.prompt: p for p in problems}
        self.seed = seed
        self.model = model
        self.price_in = input_usd_per_token
        self.price_out = output_usd_per_token
        self._orders: dict[str, list[int]] = {}
        self._by_ref: dict[str, tuple[ReplayProblem, int]] = {}

    def _problem(self, messages: list[Message]) -> ReplayProblem:
        prompt = prompt_text(messages)
        try:
            return self.problems[prompt]
        except KeyError:
            raise KeyError(f"no replay record for prompt {prompt[:60]!r}") from None

    def _order(self, p: ReplayProblem) -> list[int]:
        if p.id not in self._orders:
            order = list(range(len(p.samples)))
            # String seeds hash deterministically (random.Random uses sha512).
            random.Random(f"{self.seed}:{p.id}").shuffle(order)
            self._orders[p.id] = order
        return self._orders[p.id]

    def drawn(self, messages: list[Message]) -> int:
        p = self._problem(messages)
        return len(p.samples) - len(self._order(p))

    async def generate(
        self, messages: list[Message], n: int, *, model: str | None = None, role: str = "sample", **params: Any
    ) -> list[Completion]:
        if role not in SAMPLING_ROLES:
            raise StrategyError(f"replay has no recorded {role!r} calls: evaluate this strategy live")
        p = self._problem(messages)
        order = self._order(p)
        if n > len(order):
            raise ReplayExhausted(f"problem {p.id}: {n} samples asked, {len(order)} left")
        out = []
        for _ in range(n):
            j = order.pop(0)
            s = p.samples[j]
            ref = f"{p.id}#{j}"
            self._by_ref[ref] = (p, j)
            out.append(
                Completion(
                    text=s.text or "",
                    model=model or self.model,
                    prompt_tokens=s.prompt_tokens,
                    completion_tokens=s.completion_tokens,
                    cost_usd=s.prompt_tokens * self.price_in + s.completion_tokens * self.price_out,
                    finish_reason="stop",
                    answer=s.answer,
                    score=s.score,
                    ref=ref,
                )
            )
        return out

    def estimate_cost(
        self, messages: list[Message], n: int, *, max_tokens: int | None, model: str | None = None,
        extra_prompt_tokens: int = 0,
    ) -> float:
        # Worst case over what could be drawn: the longest recorded sample
        # (recordings are not truncated to a later max_tokens).
        p = self._problem(messages)
        prompt = max(s.prompt_tokens for s in p.samples) + extra_prompt_tokens
        out = max(s.completion_tokens for s in p.samples)
        return n * (prompt * self.price_in + out * self.price_out)

    def supports_n(self, model: str | None = None) -> bool:
        return True

    def is_correct(self, completion: Completion | None) -> bool:
        """The grader: recorded `correct`, else answer == gold. Harness use only."""
        if completion is None or completion.ref not in self._by_ref:
            return False
        p, j = self._by_ref[completion.ref]
        return bool(p.sample_correct(j))

    def verifier(self) -> Verifier:
        """A verifier backed by the recorded `correct` field (stands for unit tests)."""

        def check(messages: list[Message], completion: Completion) -> bool:
            return self.is_correct(completion)

        return check
