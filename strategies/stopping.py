"""The interface `adaptive` drives a stopping policy through.

`adaptive` draws samples in waves along `schedule` (capped at `max_n`) and
asks `should_stop` after each one. Around that it calls four hooks, each with a
default that leaves the policy as it is, so a policy overrides only what it
uses:

* `with_difficulty(p)`  -- the router's predicted P(success) for this prompt
  (a :class:`~strategies.policy.TablePolicy` split by difficulty reads it);
* `for_prompt(prompt)`  -- the prompt text (a
  :class:`~strategies.value_policy.ValuePolicy` computes its own difficulty);
* `with_stop_threshold(x)` -- the request's `stop_threshold` override;
* `vote_weights(...)`   -- per-sample vote weights (None: one sample, one vote).

The `with_*`/`for_*` hooks return a copy when they change anything: one fitted
policy object is shared by concurrent requests.

Kept apart from :mod:`strategies.policy` so that every policy module
(`policy`, `value_policy`) can build on it without importing the others.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from .votes import Tally


class StoppingPolicy(ABC):
    """When is one more wave of samples worth it?"""

    max_n: int
    # Sample counts after each wave (see :func:`checkpoints`).
    schedule: list[int]

    @abstractmethod
    def should_stop(self, t: Tally, max_n: int) -> bool:
        """Stop after the samples tallied in `t` (at most `max_n` may be drawn)?"""

    def with_difficulty(self, p: float) -> StoppingPolicy:
        """The policy for a prompt with the router's predicted P(success) `p`."""
        return self

    def for_prompt(self, prompt: str) -> StoppingPolicy:
        """The policy for this prompt text (the user turn)."""
        return self

    def with_stop_threshold(self, threshold: float) -> StoppingPolicy:
        """The policy with the request's `stop_threshold` in place of its own, if it has one."""
        return self

    def vote_weights(
        self, answers: Sequence[str | None], tokens: Sequence[int], prompt: str, texts: Sequence[str] | None = None,
    ) -> list[float] | None:
        """Per-sample vote weights from the answers, completion tokens, prompt and sample
        texts (None: every sample is one vote)."""
        return None


def checkpoints(first_wave: int, wave: int, max_n: int) -> list[int]:
    """Sample counts after each wave: first_wave, first_wave+wave, ..., max_n."""
    out, k = [], min(first_wave, max_n)
    while True:
        out.append(k)
        if k >= max_n:
            return out
        k = min(k + wave, max_n)


def difficulty_bin(p: float | None, edges: Sequence[float]) -> int | None:
    if p is None or not edges:
        return None
    return sum(p >= e for e in edges)  # quantile edges: an edge value belongs to the bin above
