"""Requests that hold budget right now, so that shutdown can settle them before the ledger closes.

When SIGTERM's grace period runs out, the server cancels the remaining requests and then shuts the
app down; a cancelled stream might not get to settle before the ledger is closed. Draining this
registry first charges each open hold for what it consumed so far and releases the rest.

It also runs settlements that were moved off the response path (see ``spawn_settlement``): a
plain completion's answer goes to the client first and its hold is settled right after, so the
ledger's second round trip does not add to the client's latency.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

log = logging.getLogger("ttc.inflight")


class HasOpenHolds(Protocol):
    async def close_open_holds(self) -> None: ...


class InFlight:
    def __init__(self) -> None:
        self._accounts: set[HasOpenHolds] = set()
        self._settlements: dict[asyncio.Task[None], str] = {}  # task -> tenant id

    def add(self, account: HasOpenHolds) -> None:
        self._accounts.add(account)

    def discard(self, account: HasOpenHolds) -> None:
        self._accounts.discard(account)

    def __len__(self) -> int:
        return len(self._accounts)

    def spawn_settlement(self, tenant_id: str, settlement: Coroutine[Any, Any, None]) -> None:
        """Run `settlement` in the background; it stays tracked until it has finished."""
        task = asyncio.get_running_loop().create_task(settlement)
        self._settlements[task] = tenant_id
        task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task[None]) -> None:
        self._settlements.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("a background settlement failed", exc_info=task.exception())

    def pending_settlements(self, tenant_id: str | None = None) -> list[asyncio.Task[None]]:
        return [task for task, tenant in self._settlements.items() if tenant_id is None or tenant == tenant_id]

    async def wait_settled(self, tenant_id: str | None = None) -> None:
        """Wait for this process's background settlements (of one tenant, or all) to land.

        A reader in this process (the usage endpoint, a reservation that just failed) then sees
        every answer it has been sent already charged.
        """
        tasks = self.pending_settlements(tenant_id)
        if tasks:
            await asyncio.wait(tasks)

    async def drain(self) -> None:
        await self.wait_settled()
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
