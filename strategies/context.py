"""Everything a strategy needs for one request, in one object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .base import DifficultyFn, Message, RewardScorer, Verifier
from .meter import Meter
from .spec import TTCSpec

if TYPE_CHECKING:
    from .escalation import EscalationModel
    from .policy import StoppingPolicy

# Request parameters a strategy must not forward to internal calls: it sets
# `n` itself, never streams internal calls, and runs tool requests as single.
_NOT_FORWARDED = {"n", "stream", "stream_options", "messages", "model"}


@dataclass
class RunContext:
    meter: Meter
    spec: TTCSpec
    # OpenAI sampling parameters of the request (max_tokens, temperature, ...).
    params: dict[str, Any]
    # The routed model (None: the Generator's default).
    model: str | None = None
    # Router's predicted P(success) of `model` on this prompt, if known.
    difficulty: float | None = None
    verifier: Verifier | None = None
    reward_scorer: RewardScorer | None = None
    difficulty_fn: DifficultyFn | None = None
    policy: "StoppingPolicy | None" = None
    escalation: "EscalationModel | None" = None

    def __post_init__(self) -> None:
        self.params = {k: v for k, v in self.params.items() if k not in _NOT_FORWARDED and v is not None}

    @property
    def max_tokens(self) -> int:
        """Per-call output cap: the request's, else the spec's default."""
        mt = self.params.get("max_tokens") or self.params.get("max_completion_tokens")
        return int(mt) if mt else self.spec.default_max_tokens

    def call_params(self, *, max_tokens: int | None = None, sampling: bool = False) -> dict[str, Any]:
        """Parameters for one internal call.

        `sampling=True` is for candidates that will be voted on or selected:
        identical greedy samples would make best-of-N pointless, so a request
        at temperature 0 (or unset) samples at `spec.sample_temperature`.
        """
        out = {k: v for k, v in self.params.items() if k != "max_completion_tokens"}
        out["max_tokens"] = max_tokens if max_tokens is not None else self.max_tokens
        if sampling and not out.get("temperature"):
            out["temperature"] = self.spec.sample_temperature
        return out

    def estimate(
        self, messages: list[Message], n: int, *, model: str | None, max_tokens: int | None = None,
        extra_prompt_tokens: int = 0,
    ) -> float:
        return self.meter.estimate(
            messages, n, model=model, max_tokens=max_tokens if max_tokens is not None else self.max_tokens,
            extra_prompt_tokens=extra_prompt_tokens,
        )
