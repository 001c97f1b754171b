"""A ledger whose settles and releases outlive an outage of its store.

A settle that cannot reach the store (down, timing out, or cut off mid-call) is written to the
spool (spool.py) and the caller moves on as if it had landed; a background task replays the
spool once the store answers again, and the next process to start replays whatever a previous
one left behind. Replays are idempotent on the reservation id, and a settle whose hold the store
no longer knows is charged as a standalone charge to the hold's buckets, so spend ends up equal
to what the upstream calls cost, however the outage went.

A reserve whose outcome is unknown (sent, then no reply; or cut off mid-call) may have left a
hold nobody will settle, which would otherwise be charged its worst case when it expires. Its
reservation id is spooled as a release: replayed, the release drops that hold, or, arriving
first, keeps the reserve from ever taking effect.
"""

from __future__ import annotations

import asyncio
import logging
import time

from .amounts import from_micro, to_micro
from .base import BudgetScope, Hold, Ledger, LedgerUnavailable, new_reservation_id
from .delegating import DelegatingLedger
from .spool import Spool, SpoolRecord

log = logging.getLogger("gateway.ledger")

REPLAY_BATCH = 500  # records sent between two compactions of the file
CLOSE_REPLAY_S = 5.0  # how long a closing ledger tries to empty its spool


class SpooledLedger(DelegatingLedger):
    def __init__(self, inner: Ledger, spool: Spool, store: str, *, ttl_s: float, replay_interval_s: float = 1.0) -> None:
        super().__init__(inner)
        self.spool = spool
        self.store = store
        self._ttl_s = ttl_s
        self._interval_s = replay_interval_s
        self._task: asyncio.Task[None] | None = None
        self._replaying: asyncio.Lock | None = None

    # -- writes that must not be lost ---------------------------------------------------------

    async def reserve(
        self, scope: BudgetScope, amount_usd: float, *, ttl_s: float | None = None, reservation_id: str | None = None
    ) -> Hold:
        rid = reservation_id or new_reservation_id()
        try:
            return await self.inner.reserve(scope, amount_usd, ttl_s=ttl_s, reservation_id=rid)
        except LedgerUnavailable as error:
            if error.maybe_applied:
                try:
                    await asyncio.to_thread(self.spool.append, self._cancel(scope, amount_usd, rid, ttl_s))
                except OSError:
                    log.exception("ledger spool %s: could not spool the cancel of reservation %s", self.spool.path, rid)
            raise
        except asyncio.CancelledError:
            self._append_now(self._cancel(scope, amount_usd, rid, ttl_s))  # no awaiting while being cancelled
            raise

    def _cancel(self, scope: BudgetScope, amount_usd: float, rid: str, ttl_s: float | None) -> SpoolRecord:
        now = time.time()
        hold = Hold(reservation_id=rid, tenant_id=scope.tenant_id, amount_usd=amount_usd, key_id=scope.key_id,
                    created_at=now, expires_at=now + (self._ttl_s if ttl_s is None else ttl_s))
        return SpoolRecord("release", hold, self.store)

    async def settle(self, hold: Hold, actual_usd: float) -> float:
        try:
            return await self.inner.settle(hold, actual_usd)
        except LedgerUnavailable as error:
            await self._append(SpoolRecord("settle", hold, self.store, actual_usd), error)
            return from_micro(to_micro(actual_usd))
        except asyncio.CancelledError:  # it may or may not have landed: replaying is safe either way
            self._append_now(SpoolRecord("settle", hold, self.store, actual_usd))
            raise

    async def release(self, hold: Hold) -> None:
        try:
            await self.inner.release(hold)
        except LedgerUnavailable as error:
            await self._append(SpoolRecord("release", hold, self.store), error)
        except asyncio.CancelledError:
            self._append_now(SpoolRecord("release", hold, self.store))
            raise

    async def _append(self, record: SpoolRecord, error: LedgerUnavailable) -> None:
        try:
            await asyncio.to_thread(self.spool.append, record)
        except OSError as spool_error:
            log.critical("ledger spool %s unwritable (%s): %s of reservation %s for tenant %s is LOST",
                         self.spool.path, spool_error, record.op, record.hold.reservation_id, record.hold.tenant_id)
            raise LedgerUnavailable(f"{error}; and the spool is unwritable: {spool_error}") from error
        log.warning("ledger unavailable (%s): %s of reservation %s for tenant %s spooled to %s",
                    error, record.op, record.hold.reservation_id, record.hold.tenant_id, self.spool.path)

    def _append_now(self, record: SpoolRecord) -> None:
        try:
            self.spool.append(record)
        except OSError:
            log.exception("ledger spool %s: could not spool the %s of reservation %s", self.spool.path, record.op,
                          record.hold.reservation_id)

    # -- replay -------------------------------------------------------------------------------

    async def replay(self) -> int:
        """Send this store's spooled records, oldest first, until the store stops answering.
        Returns how many were applied (or found already applied) and removed from the spool."""
        if not self.spool.exists():
            return 0
        if self._replaying is None:
            self._replaying = asyncio.Lock()
        async with self._replaying:
            records, bad = await asyncio.to_thread(self.spool.read)
            mine = [r for r in records if r.store == self.store]
            if not records or bad:
                await asyncio.to_thread(self.spool.remove, set())
            applied = 0
            for start in range(0, len(mine), REPLAY_BATCH):
                done = await self._replay_batch(mine[start:start + REPLAY_BATCH])
                if done:
                    left = await asyncio.to_thread(self.spool.remove, done)
                    applied += len(done)
                    log.warning("ledger spool %s: replayed %d record(s), %d left", self.spool.path, applied, left)
                if len(done) < len(mine[start:start + REPLAY_BATCH]):
                    break  # the store stopped answering: the rest waits for the next round
            return applied

    async def _replay_batch(self, batch: list[SpoolRecord]) -> set[str]:
        done: set[str] = set()
        for record in batch:
            try:
                if record.op == "settle":
                    assert record.actual_usd is not None
                    await self.inner.settle(record.hold, record.actual_usd)
                else:
                    await self.inner.release(record.hold)
            except LedgerUnavailable:
                break
            except ValueError as error:  # amounts no ledger accepts: replaying again cannot help
                log.error("ledger spool %s: dropping record %s: %s", self.spool.path, record.id, error)
            done.add(record.id)
        return done

    async def _replay_forever(self) -> None:
        while True:
            try:
                await self.replay()
            except Exception:  # keep the loop alive; the next round tries again
                log.exception("ledger spool %s: replay failed", self.spool.path)
            await asyncio.sleep(self._interval_s)

    async def start(self) -> None:
        await self.inner.start()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._replay_forever())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        try:  # what drained at shutdown and could not land; whatever stays is replayed at next start
            async with asyncio.timeout(CLOSE_REPLAY_S):
                await self.replay()
        except Exception:
            log.exception("ledger spool %s: final replay failed; records stay for the next start", self.spool.path)
        await self.inner.close()


__all__ = ["SpooledLedger"]
