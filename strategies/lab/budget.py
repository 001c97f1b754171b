"""In-memory :class:`~strategies.base.Budget` for replay evaluation and tests.

The gateway backs the same contract with its Redis/SQLite ledger; this one
keeps the books in a single process, under an asyncio lock so concurrent
strategies see the same atomic reserve/settle semantics.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from dataclasses import dataclass, field

from ..base import Hold, SimpleHold


@dataclass
class LedgerEntry:
    hold_id: int
    reserved_usd: float
    settled_usd: float | None = None
    released: bool = False


@dataclass
class InMemoryBudget:
    """A balance with holds. `balance_usd=math.inf` means unlimited."""

    balance_usd: float = math.inf
    spent_usd: float = 0.0
    entries: dict[int, LedgerEntry] = field(default_factory=dict)
    _held_usd: float = 0.0
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def reserve(self, amount_usd: float) -> Hold | None:
        if amount_usd < 0 or math.isnan(amount_usd):
            raise ValueError(f"cannot reserve {amount_usd!r}")
        async with self._lock:
            if self.spent_usd + self._held_usd + amount_usd > self.balance_usd + 1e-12:
                return None
            hold_id = next(self._ids)
            self._held_usd += amount_usd
            self.entries[hold_id] = LedgerEntry(hold_id, amount_usd)
            return SimpleHold(amount_usd=amount_usd, token=hold_id)

    async def settle(self, hold: Hold, actual_usd: float) -> None:
        async with self._lock:
            entry = self._open_entry(hold)
            if actual_usd > entry.reserved_usd + 1e-12:
                # The contract: never settle more than reserved. A strategy that
                # breaks it is a bug, so fail loudly in tests and replay.
                raise ValueError(
                    f"settle {actual_usd} exceeds hold {entry.reserved_usd} (hold {entry.hold_id})"
                )
            entry.settled_usd = actual_usd
            self._held_usd -= entry.reserved_usd
            self.spent_usd += actual_usd

    async def release(self, hold: Hold) -> None:
        async with self._lock:
            entry = self._open_entry(hold)
            entry.released = True
            self._held_usd -= entry.reserved_usd

    async def remaining_usd(self) -> float:
        async with self._lock:
            return self.balance_usd - self.spent_usd - self._held_usd

    @property
    def open_holds(self) -> int:
        return sum(1 for e in self.entries.values() if e.settled_usd is None and not e.released)

    def _open_entry(self, hold: Hold) -> LedgerEntry:
        entry = self.entries.get(getattr(hold, "token", None))  # type: ignore[arg-type]
        if entry is None:
            raise KeyError(f"unknown hold {hold.token!r}")
        if entry.settled_usd is not None or entry.released:
            raise ValueError(f"hold {entry.hold_id} already closed")
        return entry
