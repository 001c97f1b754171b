"""Explicit fail-open mode: keep serving when the ledger store is unreachable.

Only used when ``ledger.fail_open: true``. While the store is down, requests are admitted
without budget or rate-limit enforcement, which can overspend without bound, so every time it
kicks in it is logged at ERROR (throttled to one line per ``log_every_s`` with a count of the
suppressed ones). Budget *rejections* still apply whenever the store answers.
"""

from __future__ import annotations

import logging
import time
import uuid

from .base import (
    BudgetScope,
    Hold,
    Ledger,
    LedgerUnavailable,
    TenantUsage,
)
from .delegating import DelegatingLedger

log = logging.getLogger("gateway.ledger")


class FailOpenLedger(DelegatingLedger):
    def __init__(self, inner: Ledger, *, log_every_s: float = 10.0) -> None:
        super().__init__(inner)
        self._log_every_s = log_every_s
        self._last_log = float("-inf")
        self._suppressed = 0
        self.failures = 0  # total fail-open admissions; exported for metrics

    def _loud(self, op: str, err: LedgerUnavailable) -> None:
        self.failures += 1
        now = time.monotonic()
        if now - self._last_log >= self._log_every_s:
            extra = f" ({self._suppressed} similar events suppressed)" if self._suppressed else ""
            log.error(
                "LEDGER UNAVAILABLE, FAIL-OPEN: %s proceeds WITHOUT budget/rate-limit enforcement "
                "because ledger.fail_open=true: %s%s",
                op,
                err,
                extra,
            )
            self._last_log = now
            self._suppressed = 0
        else:
            self._suppressed += 1

    async def reserve(
        self, scope: BudgetScope, amount_usd: float, *, ttl_s: float | None = None, reservation_id: str | None = None
    ) -> Hold:
        try:
            return await self.inner.reserve(scope, amount_usd, ttl_s=ttl_s, reservation_id=reservation_id)
        except LedgerUnavailable as e:
            self._loud(f"reserve for tenant {scope.tenant_id!r}", e)
            now = time.time()
            return Hold(
                reservation_id=uuid.uuid4().hex,
                tenant_id=scope.tenant_id,
                amount_usd=amount_usd,
                key_id=scope.key_id,
                created_at=now,
                expires_at=now + (ttl_s or 0.0),
                enforced=False,
            )

    async def settle(self, hold: Hold, actual_usd: float) -> float:
        # An unenforced hold has no reservation in the store; settling it still records the
        # spend if the store is back by now (the settle path charges holds it does not know), or
        # later, from the spool, when the inner ledger spools (the default; see spooled.py).
        try:
            return await self.inner.settle(hold, actual_usd)
        except LedgerUnavailable as e:
            self._loud(f"settle of ${actual_usd:.6f} for tenant {hold.tenant_id!r} (spend NOT recorded)", e)
            return actual_usd

    async def release(self, hold: Hold) -> None:
        try:
            await self.inner.release(hold)
        except LedgerUnavailable as e:
            # The hold expires on its own once the store is back.
            self._loud(f"release for tenant {hold.tenant_id!r}", e)

    async def usage(self, scope: BudgetScope) -> TenantUsage:
        return await self.inner.usage(scope)  # the admin API should say 503, not invent numbers

    async def remaining_usd(self, scope: BudgetScope) -> float | None:
        try:
            return await self.inner.remaining_usd(scope)
        except LedgerUnavailable as e:
            self._loud(f"budget lookup for tenant {scope.tenant_id!r}", e)
            return None

    async def admit_request(
        self, tenant_id: str, *, rpm: int | None, tpm: int | None, estimated_tokens: int
    ) -> None:
        try:
            await self.inner.admit_request(tenant_id, rpm=rpm, tpm=tpm, estimated_tokens=estimated_tokens)
        except LedgerUnavailable as e:
            self._loud(f"rate-limit check for tenant {tenant_id!r}", e)

    async def record_tokens(
        self, tenant_id: str, *, tpm: int | None, tokens: int, estimated_tokens: int = 0
    ) -> None:
        try:
            await self.inner.record_tokens(tenant_id, tpm=tpm, tokens=tokens, estimated_tokens=estimated_tokens)
        except LedgerUnavailable as e:
            self._loud(f"TPM true-up for tenant {tenant_id!r}", e)

    async def ping(self) -> None:
        await self.inner.ping()  # health checks must still see the outage


