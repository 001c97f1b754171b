"""Per-sample vote weights for `adaptive`: not every sample is worth one vote.

Plain majority counts every sample once. On a weak model some samples are
visibly less reliable, and that is readable without any answer key, from what
the live gateway has for every sample anyway:

* its completion length (token count): on SmolLM2-135M samples that run to the
  output cap are right 14% of the time, mid-length ones 47%;
* whether its answer just repeats a number given in the prompt (the user turn),
  a typical failure of small models on word problems (4% right there);
* optionally, whether its worked arithmetic holds together
  (:mod:`strategies.arith_check`: right steps on the prompt's numbers, ending
  in the answer), which separates 63-66% right from 4-5% right on the same model.

A :class:`ReliabilityModel` maps a sample to a category (``ok`` or ``bad``
from the arithmetic check when that is on, else ``echo``, else a length bin
``L0``..``Lk`` with quantile edges) and the category to a weight in
(0, 1]: P(correct | category) on the *training* problems, relative to the best
category, shrunk toward the overall rate where a category is rare. It reads
only answers, token counts, the sample texts and the prompt text. Weighted votes change what
adaptive answers, so it is fitted with the stopping policy
(:func:`strategies.lab.fit_value_policy.fit_reliability`) and shipped in the
same JSON (:mod:`strategies.value_policy`).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .arith_check import Check, as_number, check_arithmetic, stated_numbers


def prompt_numbers(prompt: str) -> frozenset[float]:
    """The numbers a prompt states (thousands separators and currency signs dropped)."""
    return frozenset(stated_numbers(prompt))


@dataclass(frozen=True)
class ReliabilityModel:
    # Upper bounds (inclusive) of the length bins; a length above the last one is the last bin.
    length_edges: list[int]
    weights: dict[str, float]
    # Read the sample text's worked arithmetic (strategies.arith_check).
    checks: bool = False

    def category(
        self, answer: str | None, completion_tokens: int, numbers: frozenset[float], check: Check | None = None,
    ) -> str:
        if self.checks and check in ("ok", "bad"):
            return check
        value = as_number(answer)
        if value is not None and value in numbers:
            return "echo"
        return f"L{min(bisect.bisect_left(self.length_edges, completion_tokens), len(self.length_edges))}"

    def weight(
        self, answer: str | None, completion_tokens: int, numbers: frozenset[float], check: Check | None = None,
    ) -> float:
        # An unseen category counts as a full vote: no evidence against it.
        return self.weights.get(self.category(answer, completion_tokens, numbers, check), 1.0)

    def weights_for(
        self, answers: Sequence[str | None], tokens: Sequence[int], prompt: str,
        texts: Sequence[str] | None = None,
    ) -> list[float]:
        numbers = prompt_numbers(prompt)
        checks: list[Check | None] = [None] * len(answers)
        if self.checks and texts is not None:
            checks = [check_arithmetic(prompt, text, a) for text, a in zip(texts, answers)]
        return [self.weight(a, t, numbers, c) for a, t, c in zip(answers, tokens, checks)]

    def to_json(self) -> dict[str, Any]:
        return {"length_edges": self.length_edges, "weights": {k: round(v, 6) for k, v in self.weights.items()},
                "checks": self.checks}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ReliabilityModel:
        return cls([int(x) for x in obj["length_edges"]], {k: float(v) for k, v in obj["weights"].items()},
                   bool(obj.get("checks", False)))
