"""Requests that hold budget right now, so that shutdown can settle them before the ledger closes.

When SIGTERM's grace period runs out, the server cancels the remaining requests and then shuts the
app down; a cancelled stream might not get to settle before the ledger is closed. Draining this
registry first charges each open hold for what it consumed so far and releases the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("ttc.inflight")


class HasOpenHolds(Protocol):
    async def close_open_holds(self) -> None: ...


class InFlight:
    def __init__(self) -> None:
        self._accounts: set[HasOpenHolds] = set()

    def add(self, account: HasOpenHolds) -> None:
        self._accounts.add(account)

    def discard(self, account: HasOpenHolds) -> None:
        self._accounts.discard(account)

    def __len__(self) -> int:
        return len(self._accounts)

    async def drain(self) -> None:
        accounts = list(self._accounts)
        if accounts:
            log.warning("settling %d in-flight request(s) at shutdown", len(accounts))
        for account in accounts:
            try:
                await account.close_open_holds()
            except Exception:  # one failure must not keep the others' holds open
                log.exception("could not settle an in-flight request at shutdown")
        self._accounts.clear()


PartialCost = Callable[[], float]
