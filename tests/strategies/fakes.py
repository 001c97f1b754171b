"""A scripted Generator for unit tests: strategies are pure code, so no provider is involved."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from strategies.base import Completion, Hold, Message
from strategies.lab.budget import InMemoryBudget

Script = list[str] | Callable[[list[Message], int], str]


@dataclass
class Call:
    messages: list[Message]
    n: int
    model: str | None
    role: str
    params: dict[str, Any]


@dataclass
class ScriptedGenerator:
    """Answers each role from its own script (a list consumed in order, or a
    function of the messages and the call index). Every completion costs
    `prompt_tokens` x `price_in` + `completion_tokens` x `price_out`."""

    scripts: dict[str, Script]
    prompt_tokens: int = 10
    completion_tokens: int = 20
    price_in: float = 0.001
    price_out: float = 0.001
    native_n: bool = True
    # Multiply actual cost to simulate a Generator whose estimate is too low.
    cost_factor: float = 1.0
    scores: dict[str, float] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    _used: dict[str, int] = field(default_factory=dict)

    async def generate(
        self, messages: list[Message], n: int, *, model: str | None = None, role: str = "sample", **params: Any
    ) -> list[Completion]:
        if n > 1 and not self.native_n:
            raise AssertionError("n>1 sent to a backend without native n")
        self.calls.append(Call(messages, n, model, role, params))
        out = []
        for i in range(n):
            script = self.scripts[role]
            idx = self._used.get(role, 0)
            self._used[role] = idx + 1
            text = script(messages, idx) if callable(script) else script[idx % len(script)]
            # Native n bills the prompt once: on the first choice only.
            pt = self.prompt_tokens if i == 0 else 0
            cost = (pt * self.price_in + self.completion_tokens * self.price_out) * self.cost_factor
            out.append(Completion(text=text, model=model or "base", prompt_tokens=pt,
                                  completion_tokens=self.completion_tokens, cost_usd=cost,
                                  score=self.scores.get(text)))
        return out

    def estimate_cost(
        self, messages: list[Message], n: int, *, max_tokens: int | None, model: str | None = None,
        extra_prompt_tokens: int = 0,
    ) -> float:
        out = self.completion_tokens if max_tokens is None else max(max_tokens, self.completion_tokens)
        return (self.prompt_tokens + extra_prompt_tokens) * self.price_in + n * out * self.price_out

    def supports_n(self, model: str | None = None) -> bool:
        return self.native_n

    def roles(self) -> list[str]:
        return [c.role for c in self.calls]


@dataclass
class TracingBudget(InMemoryBudget):
    """An InMemoryBudget that logs every ledger event with the amount it moved
    and the total still held open right after it, so tests can watch a
    request's reservation shrink over time."""

    trace: list[tuple[str, float, float]] = field(default_factory=list)

    @property
    def held_usd(self) -> float:
        return sum(e.reserved_usd for e in self.entries.values() if e.settled_usd is None and not e.released)

    async def reserve(self, amount_usd: float) -> Hold | None:
        hold = await super().reserve(amount_usd)
        if hold is not None:
            self.trace.append(("reserve", amount_usd, self.held_usd))
        return hold

    async def settle(self, hold: Hold, actual_usd: float) -> None:
        await super().settle(hold, actual_usd)
        self.trace.append(("settle", actual_usd, self.held_usd))

    async def release(self, hold: Hold) -> None:
        await super().release(hold)
        self.trace.append(("release", hold.amount_usd, self.held_usd))
