"""One hold's life: reserved before the upstream call, settled on the recorded usage or released.

Plain completions, streams and embeddings run one call under one hold through `MeteredCall`.
Strategies run several calls under holds their `Meter` sizes; they reach the same account
through `AccountBudget` (gateway/pipeline/generator.py) and the same calls through
`UpstreamCalls`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from strategies import CallRecord

from gateway.accounting import Account
from gateway.config import ModelConfig
from gateway.ledger import Hold
from gateway.upstream import UpstreamError

T = TypeVar("T")


class MeteredCall:
    def __init__(self, account: Account, hold: Hold, worst_case: CallRecord) -> None:
        self.account = account
        self.hold = hold
        self.worst_case = worst_case

    @classmethod
    async def reserve(cls, account: Account, worst_case: CallRecord) -> MeteredCall:
        """Hold the call's worst case; 429 `insufficient_quota` or 503 when it cannot be held."""
        return cls(account, await account.reserve(worst_case.cost_usd), worst_case)

    async def call(self, run: Callable[[], Awaitable[T]], served_model: str) -> T:
        """Make the upstream call under the hold. A failed call gives the hold back; one cut off
        mid-call (a shutdown past its grace period) is charged and recorded at its worst case,
        since the upstream has the request and bills it however far it got."""
        try:
            return await run()
        except UpstreamError as error:
            await self.settle_or_release()
            raise error.to_gateway_error(served_model) from None
        except asyncio.CancelledError:
            self.account.add(self.worst_case)
            await self.account.settle(self.hold, self.hold.amount_usd)
            raise
        except BaseException:
            await self.settle_or_release()
            raise

    async def settle_or_release(self) -> None:
        """After a failure: calls that did run (a failed fan-out's siblings) are charged."""
        if self.account.calls:
            await self.settle()
        else:
            await self.account.release(self.hold)

    def record(self, model: ModelConfig, role: str, prompt_tokens: int, completion_tokens: int) -> None:
        self.account.record(model, role, prompt_tokens, completion_tokens)

    def price_interruption(self, cost: Callable[[], float]) -> None:
        """What a shutdown drain charges this hold if the request is cut off from here on."""
        self.account.price_partial(self.hold, cost)

    def remaining_after_settle(self) -> float | None:
        return self.account.remaining_after_settle(self.hold, self.account.total_cost_usd)

    async def settle(self) -> None:
        await self.account.settle(self.hold, self.account.total_cost_usd)
