"""Per-tenant budget and rate-limit ledger (Redis or embedded SQLite), shared by all replicas."""

from __future__ import annotations

import time
from collections.abc import Callable

from .base import (
    BudgetExceeded,
    BudgetScope,
    Hold,
    Ledger,
    LedgerError,
    LedgerUnavailable,
    RateLimitExceeded,
    TenantUsage,
    WindowLimit,
    WindowUsage,
)
from .fail_open import FailOpenLedger
from .policy import Policy
from .redis_ledger import RedisLedger
from .settings import LedgerSettings
from .sqlite_ledger import SqliteLedger
from .windows import WINDOWS, Window


def make_ledger(settings: LedgerSettings, *, clock: Callable[[], float] = time.time) -> Ledger:
    """RedisLedger if ``redis_url`` is set, else SqliteLedger; wrapped fail-open if configured.

    Construction does not touch the store (so the app can start while Redis is still coming
    up); call ``ping()`` to check it.
    """
    ledger: Ledger = (
        RedisLedger(settings, clock=clock) if settings.redis_url else SqliteLedger(settings, clock=clock)
    )
    return FailOpenLedger(ledger) if settings.fail_open else ledger


__all__ = [
    "WINDOWS",
    "BudgetExceeded",
    "BudgetScope",
    "FailOpenLedger",
    "Hold",
    "Ledger",
    "LedgerError",
    "LedgerSettings",
    "LedgerUnavailable",
    "Policy",
    "RateLimitExceeded",
    "RedisLedger",
    "SqliteLedger",
    "TenantUsage",
    "Window",
    "WindowLimit",
    "WindowUsage",
    "make_ledger",
]
