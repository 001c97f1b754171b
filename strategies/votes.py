"""Vote tallies over extracted answers (shared by majority voting and adaptive).

Only a completion's extracted `answer` and its reward `score` are read here,
never any correctness label: this is what makes replay evaluation of voting
and of adaptive honest.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.answers import normalize_math

from .base import Completion
from .extractors import get_extractor


def answer_key(completion: Completion, extractor: str = "auto") -> str | None:
    """The canonical answer a completion votes for (None: abstains)."""
    if completion.answer is not None:
        # Pre-extracted upstream (replay): only unify equivalent forms.
        return normalize_math(completion.answer) if completion.answer.strip() else None
    return get_extractor(extractor)(completion.text)


@dataclass(frozen=True)
class Tally:
    """Votes after `drawn` samples. `ranking` is best first."""

    drawn: int
    counts: dict[str, int]
    score_sums: dict[str, float]
    first_seen: dict[str, int]
    has_scores: bool
    # Summed per-sample vote weights (`strategies.reliability`); None: one sample, one vote.
    weight_sums: dict[str, float] | None = None

    @property
    def ranking(self) -> list[str]:
        # Most votes (weighted, when weights are given); ties go to the larger
        # summed reward score (when the Generator supplies scores), then to the
        # answer seen first.
        w = self.weight_sums
        if w is not None:
            return sorted(self.counts, key=lambda a: (-round(w[a], 9), -self.score_sums.get(a, 0.0), self.first_seen[a]))
        return sorted(
            self.counts,
            key=lambda a: (-self.counts[a], -self.score_sums.get(a, 0.0), self.first_seen[a]),
        )

    def weight_of(self, rank: int) -> float:
        """Weighted votes of the answer ranked `rank` (0: the leader); 0 if none."""
        r = self.ranking
        if rank >= len(r):
            return 0.0
        return self.weight_sums[r[rank]] if self.weight_sums is not None else float(self.counts[r[rank]])

    @property
    def leader(self) -> str | None:
        r = self.ranking
        return r[0] if r else None

    @property
    def top(self) -> int:
        return self.counts[self.leader] if self.counts else 0

    @property
    def second(self) -> int:
        r = self.ranking
        return self.counts[r[1]] if len(r) > 1 else 0

    @property
    def distinct(self) -> int:
        return len(self.counts)

    def leader_mean_score(self) -> float | None:
        lead = self.leader
        if lead is None or not self.has_scores:
            return None
        return self.score_sums[lead] / self.counts[lead]


def tally(
    keys: list[str | None], scores: list[float | None] | None = None, weights: list[float] | None = None,
) -> Tally:
    counts: dict[str, int] = {}
    sums: dict[str, float] = {}
    first: dict[str, int] = {}
    wsums: dict[str, float] | None = {} if weights is not None else None
    scores = scores or [None] * len(keys)
    has_scores = any(s is not None for s in scores)
    for i, (k, s) in enumerate(zip(keys, scores)):
        if k is None:
            continue
        counts[k] = counts.get(k, 0) + 1
        sums[k] = sums.get(k, 0.0) + (s or 0.0)
        first.setdefault(k, i)
        if wsums is not None and weights is not None:
            wsums[k] = wsums.get(k, 0.0) + weights[i]
    return Tally(len(keys), counts, sums, first, has_scores, wsums)


def representative(completions: list[Completion], keys: list[str | None], answer: str) -> int:
    """Index of the completion returned for a winning answer: its best-scored
    member when scores exist, else the first one drawn."""
    members = [i for i, k in enumerate(keys) if k == answer]
    scored = [i for i in members if completions[i].score is not None]
    if scored:
        return max(scored, key=lambda i: completions[i].score or 0.0)
    return members[0]
