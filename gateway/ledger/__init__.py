"""Per-tenant budget and rate-limit ledger (Redis or embedded SQLite), shared by all replicas."""

from __future__ import annotations

import time
from collections.abc import Callable

from .amounts import WindowLimit
from .base import (
    BudgetExceeded,
    BudgetScope,
    Hold,
    Ledger,
    LedgerError,
    LedgerUnavailable,
    RateLimitExceeded,
    TenantUsage,
    WindowUsage,
)
from .fail_open import FailOpenLedger
from .policy import Policy
from .redis_ledger import RedisLedger
from .settings import LedgerSettings
from .spool import Spool, SpoolRecord, spool_path, store_id
from .spooled import SpooledLedger
from .sqlite_ledger import SqliteLedger
from .windows import WINDOWS, Window


def make_ledger(settings: LedgerSettings, *, clock: Callable[[], float] = time.time, spool: bool = False) -> Ledger:
    """RedisLedger if ``redis_url`` is set, else SqliteLedger; with ``spool`` (the gateway's
    choice) its settles and releases survive an outage of the store through the spool file
    (``spool_path(settings)``; ``start()`` replays it); wrapped fail-open if configured.

    Construction does not touch the store (so the app can start while Redis is still coming
    up); call ``ping()`` to check it.
    """
    ledger: Ledger = (
        RedisLedger(settings, clock=clock) if settings.redis_url else SqliteLedger(settings, clock=clock)
    )
    if spool:
        ledger = SpooledLedger(ledger, Spool(spool_path(settings)), store_id(settings),
                               ttl_s=settings.reservation_ttl_s, replay_interval_s=settings.spool_replay_interval_s)
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
    "Spool",
    "SpoolRecord",
    "SpooledLedger",
    "SqliteLedger",
    "TenantUsage",
    "Window",
    "WindowLimit",
    "WindowUsage",
    "make_ledger",
    "spool_path",
    "store_id",
]
