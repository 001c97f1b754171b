"""Core types and the two interfaces the gateway implements for the strategy layer.

`strategies` never talks to HTTP, Redis, the router or the gateway. The gateway
hands every strategy two small objects:

* a :class:`Generator` -- one upstream chat-completion request per `generate`
  call, plus a worst-case cost estimate for a call *before* it is made and
  whether the model accepts the OpenAI `n` parameter;
* a :class:`Budget` -- the tenant's ledger: `reserve` before spending, then
  `settle` with the actual cost or `release` what was not used.

Split of responsibilities (why fan-out lives here, not in the Generator): a
`generate` call is exactly one upstream request. When a model lacks native `n`
(Ollama- or Anthropic-style backends), the strategy layer (`meter.Meter`)
issues parallel `n=1` calls itself. That keeps the gateway's Generator a thin
adapter over its upstream layer, and lets strategies account, cap and stop
each sample individually.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Literal, Protocol, Sequence, runtime_checkable

Message = dict[str, Any]
"""An OpenAI-format chat message (`{"role": ..., "content": ...}`)."""


@dataclass(frozen=True)
class Completion:
    """One generated choice with its own usage.

    With native `n`, the upstream bills the prompt once for all choices: the
    Generator attributes `prompt_tokens` (and the prompt's cost) to the first
    choice and 0 to the others, so sums over completions are the true totals.
    """

    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    finish_reason: str | None = "stop"
    # Final answer already extracted upstream (replay files, structured output).
    # When set, answer extractors are skipped.
    answer: str | None = None
    # Reward-model score attached by the Generator, if it has one (replay files).
    score: float | None = None
    # Opaque handle the Generator may use to look the sample up again
    # (upstream response id, replay sample id). Strategies never interpret it.
    ref: str | None = None


@dataclass(frozen=True)
class CallRecord:
    """One internal call as reported in the response's `ttc.calls`.

    A sample counts as one call: with native `n` a single upstream request
    produces `n` records (the prompt tokens on the first one).
    """

    model: str
    role: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "role": self.role,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost_usd,
        }


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True)
class StrategyInfo:
    """`ttc.strategy` in the response.

    `n` is the size that actually ran: samples drawn (best_of_n, adaptive),
    rounds planned (refine), System-2 samples or rounds per hard step (scale).
    """

    name: str
    n: int
    degraded: bool = False
    # Why the strategy differs from the request (forced single, shrunk N, ...).
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "n": self.n, "degraded": self.degraded}
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class StrategyResult:
    """What every strategy returns.

    `budget_exhausted` is set when the budget (or the per-request cap) ran out
    mid-strategy: `text` is then the best answer found so far, and
    `budget_message` says so in words the gateway can forward.
    """

    text: str
    calls: tuple[CallRecord, ...]
    strategy: StrategyInfo
    chosen: Completion | None = None
    answer: str | None = None
    budget_exhausted: bool = False
    budget_message: str | None = None
    finish_reason: str | None = "stop"
    reserved_usd: float = 0.0
    # Cost a Generator reported above its own worst-case estimate. The ledger is
    # never settled above the reservation; this makes the gap visible.
    unreserved_cost_usd: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    # Client-visible details, merged into the response's `ttc` object (e.g. `cascade`'s decision).
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def usage(self) -> Usage:
        return Usage(
            prompt_tokens=sum(c.prompt_tokens for c in self.calls),
            completion_tokens=sum(c.completion_tokens for c in self.calls),
        )

    @property
    def cost_usd(self) -> float:
        return sum(c.cost_usd for c in self.calls)

    def ttc_dict(self) -> dict[str, Any]:
        """The `ttc` object of a response (the gateway may add fields)."""
        out: dict[str, Any] = {
            "strategy": self.strategy.as_dict(),
            "calls": [c.as_dict() for c in self.calls],
            "cost_usd": self.cost_usd,
        }
        out.update(self.report)
        if self.budget_exhausted:
            out["budget_exhausted"] = True
            out["message"] = self.budget_message
        return out


@runtime_checkable
class Generator(Protocol):
    """One upstream chat-completion request per `generate` call.

    `generate` must return exactly `n` completions (or raise). Strategies only
    pass `n > 1` when `supports_n(model)` is true. `role` names the purpose of
    the call (`sample`, `judge`, `critique`, `revise`, `decompose`, `rate`,
    `solve`, `synthesize`, ...) for `ttc.calls` and metrics. `params` are
    OpenAI sampling parameters (`max_tokens`, `temperature`, `top_p`, `stop`,
    `response_format`, ...). `model=None` means the gateway's routed model.
    """

    async def generate(
        self,
        messages: list[Message],
        n: int,
        *,
        model: str | None = None,
        role: str = "sample",
        **params: Any,
    ) -> list[Completion]: ...

    def estimate_cost(
        self,
        messages: list[Message],
        n: int,
        *,
        max_tokens: int | None,
        model: str | None = None,
        extra_prompt_tokens: int = 0,
    ) -> float:
        """Worst-case USD cost of `generate(messages, n, max_tokens=...)`.

        Must be an upper bound: prompt tokens × input price + `n` × the output
        cap × output price (the Generator picks its own cap when `max_tokens`
        is None). `extra_prompt_tokens` covers text that will be spliced into
        the prompt later (drafts, critiques, earlier sub-answers), so fixed
        strategies can price their whole plan up front.
        """
        ...

    def supports_n(self, model: str | None = None) -> bool:
        """Whether one request can return `n` choices (OpenAI `n`)."""
        ...


@runtime_checkable
class Hold(Protocol):
    """A reservation on the ledger: any object with its reserved `amount_usd`
    (the gateway's ledger Hold qualifies as is)."""

    @property
    def amount_usd(self) -> float: ...


@dataclass(frozen=True)
class SimpleHold:
    """The Hold of :class:`~strategies.lab.budget.InMemoryBudget`. `token` is its id."""

    amount_usd: float
    token: Any = None


class BudgetRefused(Exception):
    """A Budget may raise this from `reserve` instead of returning None."""


@runtime_checkable
class Budget(Protocol):
    """The tenant's ledger as seen by a strategy.

    `reserve` atomically holds `amount_usd` and returns a Hold, or returns None
    / raises :class:`BudgetRefused` when it does not fit. Every Hold is later
    passed to exactly one of `settle` (charge `actual_usd <= hold.amount_usd`,
    release the rest) or `release` (charge nothing).
    """

    async def reserve(self, amount_usd: float) -> Hold | None: ...

    async def settle(self, hold: Hold, actual_usd: float) -> None: ...

    async def release(self, hold: Hold) -> None: ...

    async def remaining_usd(self) -> float | None:
        """Spendable balance now (after other holds); None when unknown or
        unlimited. May be stale by the time `reserve` runs: strategies use it
        only to size their plan, `reserve` stays the arbiter."""
        ...

    # Optional: `watch(hold, interrupted_cost)` is called for every new Hold when the Budget has
    # it; `interrupted_cost()` says what to charge that hold if the run is cut off before it settles.


class InsufficientBudget(Exception):
    """Not even one `single` call fits the budget or the per-request cap.

    The gateway maps this to HTTP 429 (OpenAI `insufficient_quota`-style error).
    """

    def __init__(self, needed_usd: float, available_usd: float) -> None:
        self.needed_usd = needed_usd
        self.available_usd = available_usd
        super().__init__(
            f"budget too low for a single call: needs ${needed_usd:.6f}, "
            f"${available_usd:.6f} available"
        )


class StrategyError(Exception):
    """A strategy was misconfigured (unknown selector, missing verifier...).

    The gateway maps it to HTTP 400."""


ProgressKind = Literal["call_start", "call_end", "wave_end", "final"]


@dataclass(frozen=True)
class ProgressEvent:
    """Progress of a running strategy.

    `final` is emitted once, when the answer is chosen and the ledger is
    settled; its `text` is what the gateway streams. Other events are internal
    progress: the gateway turns them into SSE `: keep-alive` comments and must
    never stream their content as the answer.
    """

    kind: ProgressKind
    role: str | None = None
    model: str | None = None
    text: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


ProgressCallback = Callable[[ProgressEvent], Awaitable[None]]

Verifier = Callable[[list[Message], Completion], "Awaitable[bool] | bool"]
"""User check of one candidate (unit tests, a regex...). True means accepted."""

RewardScorer = Callable[[list[Message], Sequence[Completion]], Awaitable[list[float]]]
"""Scores candidates with a reward-model endpoint; higher is better."""

DifficultyFn = Callable[[str], Awaitable[float | None]]
"""Predicted P(success) in [0,1] of a (sub-)problem, e.g. the router's estimate."""
