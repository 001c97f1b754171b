"""A nearest-neighbour prompt difficulty for `adaptive`'s value policy.

Word problems come in families (the same story with other numbers), and a weak
model tends to fail a whole family. This model predicts P(one sample is
correct) for a prompt as the mean success rate of the `k` training prompts
with the most similar word sets (Jaccard). It reads only prompt text; it is
fitted on training problems and stored in the policy JSON, so the gateway
computes exactly the same estimate for a live prompt (fitting:
:func:`strategies.lab.fit_value_policy.fit_knn_difficulty`). On the SmolLM2-135M
recording it separates hard from easy prompts better than the 4-feature
logistic model in :mod:`strategies.lab.difficulty` (which sees only number sizes
and lengths).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_WORD = re.compile(r"[a-z]+")


def words(prompt: str) -> frozenset[str]:
    return frozenset(_WORD.findall(prompt.lower()))


@dataclass(frozen=True)
class KnnDifficulty:
    prompts: list[frozenset[str]]
    success: list[float]
    k: int = 5

    def predict(self, prompt: str, *, exclude: int | None = None) -> float | None:
        """Mean success of the k most similar training prompts (`exclude`: leave one out)."""
        w = words(prompt)
        sims = sorted(
            ((len(w & p) / max(len(w | p), 1), -i, i) for i, p in enumerate(self.prompts) if i != exclude),
            reverse=True,
        )[: self.k]
        if not sims:
            return None
        return sum(self.success[i] for *_, i in sims) / len(sims)

    def to_json(self) -> dict[str, Any]:
        return {"k": self.k, "prompts": [sorted(p) for p in self.prompts], "success": [round(s, 6) for s in self.success]}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> KnnDifficulty:
        return cls([frozenset(p) for p in obj["prompts"]], [float(s) for s in obj["success"]], int(obj.get("k", 5)))
