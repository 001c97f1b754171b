"""A ledger that hands every operation to another one: the base of the wrappers (fail-open, the
settle spool), which each override only the operations they change."""

from __future__ import annotations

from collections.abc import Sequence

from .amounts import WindowLimit
from .base import BudgetScope, Hold, Ledger, TenantUsage
from .policy import Policy


class DelegatingLedger(Ledger):
    def __init__(self, inner: Ledger) -> None:
        self.inner = inner

    async def reserve(
        self, scope: BudgetScope, amount_usd: float, *, ttl_s: float | None = None, reservation_id: str | None = None
    ) -> Hold:
        return await self.inner.reserve(scope, amount_usd, ttl_s=ttl_s, reservation_id=reservation_id)

    async def settle(self, hold: Hold, actual_usd: float) -> float:
        return await self.inner.settle(hold, actual_usd)

    async def release(self, hold: Hold) -> None:
        await self.inner.release(hold)

    async def start(self) -> None:
        await self.inner.start()

    async def usage(self, scope: BudgetScope) -> TenantUsage:
        return await self.inner.usage(scope)

    async def remaining_usd(self, scope: BudgetScope) -> float | None:
        return await self.inner.remaining_usd(scope)

    async def set_limits(self, tenant_id: str, windows: Sequence[WindowLimit], max_cost_per_request_usd: float | None) -> None:
        await self.inner.set_limits(tenant_id, windows, max_cost_per_request_usd)

    async def clear_limits(self, tenant_id: str) -> None:
        await self.inner.clear_limits(tenant_id)

    async def stored_limits(self, tenant_id: str) -> Policy | None:
        return await self.inner.stored_limits(tenant_id)

    async def admit_request(self, tenant_id: str, *, rpm: int | None, tpm: int | None, estimated_tokens: int) -> None:
        await self.inner.admit_request(tenant_id, rpm=rpm, tpm=tpm, estimated_tokens=estimated_tokens)

    async def record_tokens(self, tenant_id: str, *, tpm: int | None, tokens: int, estimated_tokens: int = 0) -> None:
        await self.inner.record_tokens(tenant_id, tpm=tpm, tokens=tokens, estimated_tokens=estimated_tokens)

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()
