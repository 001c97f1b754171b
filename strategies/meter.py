"""Metered access to the Generator: reservations, per-call accounting, fan-out.

Every strategy talks to the Generator only through a :class:`Meter`, which
enforces the budget rules of issue 6 in one place:

* a call is made only if its worst-case cost fits what is still unspent in the
  open reservation (so a request never settles more than it reserved);
* the per-request cap (`max_cost_per_request_usd`) bounds the sum of all
  reservations of the request;
* `close()` settles the open reservation on the actual cost the moment a
  strategy stops, which releases whatever it did not use; `release_unused()`
  gives back the part of a plan that turned out not to be needed mid-way;
* every completion becomes one :class:`CallRecord`, so `usage` and
  `ttc.calls` sum all internal calls;
* `n > 1` becomes one request when the model supports native `n`, and that many
  parallel `n=1` requests when it does not.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

from .base import (
    Budget,
    BudgetRefused,
    CallRecord,
    Completion,
    Generator,
    Hold,
    Message,
    ProgressCallback,
    ProgressEvent,
)

_EPS = 1e-12


class OutOfReservation(Exception):
    """The next call's worst case does not fit the open reservation.

    Internal to strategies: they catch it and return the best answer so far.
    """


class Meter:
    def __init__(
        self,
        generator: Generator,
        budget: Budget,
        *,
        max_cost_usd: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.generator = generator
        self.budget = budget
        self.max_cost_usd = math.inf if max_cost_usd is None else max_cost_usd
        self.progress = progress
        self.calls: list[CallRecord] = []
        self._hold: Hold | None = None
        self._charged = 0.0  # actual cost charged to the open hold
        self._inflight = 0.0  # worst case of calls running against the open hold
        self._closed_total = 0.0  # settled amounts of earlier holds
        self.reserved_total = 0.0  # sum of every hold's amount (for reports)
        self.unreserved_cost_usd = 0.0
        self.interrupted_usd = 0.0  # worst case charged for calls cut off by cancellation

    # ----------------------------------------------------------------- budget
    async def available_usd(self) -> float:
        """What a new reservation could get: ledger balance and request cap."""
        cap_left = self.max_cost_usd - self._closed_total - (self._hold.amount_usd if self._hold else 0.0)
        remaining = await self.budget.remaining_usd()
        if remaining is None:  # unknown or unlimited: `reserve` decides
            remaining = math.inf
        return max(0.0, min(remaining, cap_left))

    @property
    def spent_usd(self) -> float:
        return sum(c.cost_usd for c in self.calls)

    @property
    def has_hold(self) -> bool:
        return self._hold is not None

    @property
    def hold_left_usd(self) -> float:
        if self._hold is None:
            return 0.0
        return self._hold.amount_usd - self._charged - self._inflight

    def fits(self, amount_usd: float) -> bool:
        """Whether calls worth `amount_usd` (worst case) fit the open reservation."""
        return self._hold is not None and amount_usd <= self.hold_left_usd + _EPS

    async def reserve(self, amount_usd: float) -> bool:
        """Open a reservation of `amount_usd`. One open reservation at a time."""
        if self._hold is not None:
            raise RuntimeError("close the open reservation before reserving again")
        cap_left = self.max_cost_usd - self._closed_total
        if amount_usd > cap_left + _EPS:
            return False
        try:
            hold = await self.budget.reserve(amount_usd)
        except BudgetRefused:
            hold = None
        if hold is None:
            return False
        self._hold = hold
        self._charged = 0.0
        self.reserved_total += hold.amount_usd
        watch = getattr(self.budget, "watch", None)  # optional Budget hook, see `interrupted_cost_usd`
        if watch is not None:
            watch(hold, self.interrupted_cost_usd)
        return True

    def interrupted_cost_usd(self) -> float:
        """What the open hold should be charged if the run is cut off now (a server shutting down).

        Finished calls at their actual cost, plus calls still in flight at their worst case: they
        were sent, the provider bills them, and how far they got is unknown. Over-charging an
        interrupted call is the side that keeps budgets holding; it never exceeds the hold.
        """
        if self._hold is None:
            return 0.0
        return min(self._charged + self._inflight, self._hold.amount_usd)

    async def reserve_largest(self, cost_of: Callable[[int], float], hi: int, lo: int = 1) -> int | None:
        """Reserve the plan of the largest size k in [lo, hi] that fits.

        `cost_of(k)` is the worst-case cost of the plan of size k (N samples,
        R rounds...), non-decreasing in k. The ledger's balance sizes the first
        try; a refused reserve (another request got there first) steps down.
        """
        available = await self.available_usd()
        k = hi
        while k >= lo and cost_of(k) > available + _EPS:
            k -= 1
        while k >= lo:
            if await self.reserve(cost_of(k)):
                return k
            k -= 1
        return None

    async def release_unused(self, keep_usd: float) -> bool:
        """Shrink the open reservation to what it charged plus `keep_usd`, now.

        For a plan that learns mid-way it needs less than it reserved (SCALE
        after decomposing into fewer sub-problems): the surplus goes back to
        the tenant at once instead of when the strategy ends. A Budget has no
        partial release, so the hold is settled on its actual cost and
        `keep_usd` reserved afresh; each hold still settles at most its own
        amount. Returns False when that fresh reserve is refused (another
        request took the money in between): the meter then has no open hold,
        and the next call raises `OutOfReservation` like any budget stop.
        """
        if self._hold is None:
            return False
        if self._inflight > 0:
            # An in-flight call's cost would land on the new hold unreserved.
            raise RuntimeError("release_unused with calls in flight")
        if keep_usd >= self.hold_left_usd - _EPS:
            return True  # nothing to give back
        await self.close()
        if keep_usd <= 0.0:
            return True
        return await self.reserve(keep_usd)

    async def close(self) -> None:
        """Settle the open reservation on actual cost; releases the unused part."""
        hold, self._hold = self._hold, None
        if hold is None:
            return
        charged = self._charged
        if charged > hold.amount_usd:
            # The Generator's estimate was not a true upper bound. Never settle
            # above the hold; report the gap instead.
            self.unreserved_cost_usd += charged - hold.amount_usd
            charged = hold.amount_usd
        if charged <= 0.0:
            await self.budget.release(hold)
        else:
            await self.budget.settle(hold, charged)
        self._closed_total += charged

    # -------------------------------------------------------------- generation
    def estimate(
        self,
        messages: list[Message],
        n: int,
        *,
        model: str | None,
        max_tokens: int | None,
        extra_prompt_tokens: int = 0,
    ) -> float:
        if n <= 0:
            return 0.0
        if n > 1 and not self.generator.supports_n(model):
            # Parallel n=1 calls each pay for the prompt.
            return n * self.generator.estimate_cost(
                messages, 1, max_tokens=max_tokens, model=model, extra_prompt_tokens=extra_prompt_tokens
            )
        return self.generator.estimate_cost(
            messages, n, max_tokens=max_tokens, model=model, extra_prompt_tokens=extra_prompt_tokens
        )

    async def generate(
        self,
        messages: list[Message],
        n: int = 1,
        *,
        model: str | None = None,
        role: str = "sample",
        **params: Any,
    ) -> list[Completion]:
        """Make the call(s) if their worst case fits the open reservation."""
        if n <= 0:
            return []
        est = self.estimate(messages, n, model=model, max_tokens=params.get("max_tokens"))
        if self._hold is None or est > self.hold_left_usd + _EPS:
            raise OutOfReservation(f"{role} call needs ${est:.6f}, ${self.hold_left_usd:.6f} left in reservation")
        self._inflight += est
        await self._emit(ProgressEvent("call_start", role=role, model=model, detail={"n": n}))
        try:
            if n == 1 or self.generator.supports_n(model):
                completions = await self.generator.generate(messages, n, model=model, role=role, **params)
            else:
                completions = await self._fan_out(messages, n, model=model, role=role, **params)
        except asyncio.CancelledError:
            # Cut off (server shutdown, client gone): the call was sent and the upstream bills it,
            # but how far it got is unknown, so it is charged at its worst case (close() never
            # settles past the hold). Charging nothing would let interrupted work escape the budget.
            self._charged += est
            self.interrupted_usd += est
            raise
        finally:
            self._inflight -= est
        for c in completions:
            self._charged += c.cost_usd
            self.calls.append(CallRecord(c.model, role, c.prompt_tokens, c.completion_tokens, c.cost_usd))
        await self._emit(ProgressEvent("call_end", role=role, model=model, detail={"n": len(completions)}))
        return completions

    async def _fan_out(
        self, messages: list[Message], n: int, *, model: str | None, role: str, **params: Any
    ) -> list[Completion]:
        results = await asyncio.gather(
            *(self.generator.generate(messages, 1, model=model, role=role, **params) for _ in range(n)),
            return_exceptions=True,
        )
        completions = [c for r in results if not isinstance(r, BaseException) for c in r]
        if not completions:
            # Every parallel call failed: surface the first error to the gateway.
            first = next(r for r in results if isinstance(r, BaseException))
            raise first
        return completions

    async def emit_final(self, text: str, **detail: Any) -> None:
        await self._emit(ProgressEvent("final", text=text, detail=detail))

    async def emit_wave(self, **detail: Any) -> None:
        await self._emit(ProgressEvent("wave_end", detail=detail))

    async def _emit(self, event: ProgressEvent) -> None:
        if self.progress is not None:
            await self.progress(event)
