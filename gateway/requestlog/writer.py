"""The request log's observer and writer.

`observe()` runs on the event loop at the end of every request: it appends the record to a
bounded in-memory queue (a deque and an Event; no lock, no await) and returns. When the queue is
full the row goes to the spool instead, and only when the spool is full too (the disk is full) is
it dropped, counted in `ttc_request_log_dropped_total` and logged as an error. A request is never
delayed or failed by the log.

One writer task drains the queue in batches (whatever has queued while the previous batch was
written, up to `batch_size`); building the rows (hashing content) and the store call run in a
thread. A batch the store refuses goes to the spool, fsync'd, and the store is left alone for
`replay_interval_s`; then the spool is replayed, idempotently, and writing resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from pathlib import Path

from gateway.config import resolve_secret
from gateway.ledger.settings import LedgerSettings
from gateway.metrics import Metrics
from gateway.pipeline.observe import RequestRecord
from gateway.requestlog.row import RowData, row_of
from gateway.requestlog.settings import RequestLogSettings
from gateway.requestlog.spool import RequestSpool, SpoolFull, read_batches
from gateway.requestlog.store import RequestStore, RowsRejected, StoreUnavailable

log = logging.getLogger("ttc.requestlog")

MAINTAIN_INTERVAL_S = 3600.0
DROP_LOG_INTERVAL_S = 10.0


class RequestLog:
    def __init__(self, store: RequestStore, spool: RequestSpool, settings: RequestLogSettings, metrics: Metrics) -> None:
        self.store = store
        self.spool = spool
        self.settings = settings
        self.metrics = metrics
        self._queue: deque[RequestRecord] = deque()
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._enqueued = 0  # records accepted into the queue
        self._handled = 0  # of those, written or spooled (or dropped)
        self._down_until = 0.0  # while the store failed recently, batches go straight to the spool
        self._unsynced = False  # overflow appends not yet fsync'd
        self._orphans_done = False  # spool files other (dead) processes claimed, replayed once
        self._spool_dirty = True  # rows may wait in the spool (at start: a previous process's)
        self._hurry = False  # a reader or shutdown waits: write without waiting for a full batch
        self._last_maintained = float("-inf")  # maintain (partitions ahead, retention) at once
        self.max_depth = 0
        self._unreported = 0  # drops not yet in the log
        self._last_drop_log = float("-inf")

    # --- the hot path -------------------------------------------------------------------------

    def observe(self, record: RequestRecord) -> None:
        if self._stopping or len(self._queue) >= self.settings.queue_size:
            self._overflow(record)
            return
        queue = self._queue
        queue.append(record)
        self._enqueued += 1
        depth = len(queue)
        if depth > self.max_depth:
            self.max_depth = depth
        # Wake the writer for the first row (it then waits to fill a batch) and for a full batch.
        if (depth == 1 or depth >= self.settings.batch_size) and not self._wake.is_set():
            self._wake.set()

    def _overflow(self, record: RequestRecord) -> None:
        try:
            self.spool.append([row_of(record)], sync=False)  # the page cache; the next batch fsyncs
            self._unsynced = self._spool_dirty = True
        except SpoolFull as error:
            self._drop(1, str(error))
        except Exception:
            log.exception("request log: could not spool request %s", record.request_id)
            self._drop(1, "unexpected error")

    def _drop(self, count: int, why: str) -> None:
        self.metrics.request_log_dropped.inc(count)
        self._unreported += count
        now = time.monotonic()
        if now - self._last_drop_log >= DROP_LOG_INTERVAL_S:  # loud, but not one line per row on a full disk
            log.error("REQUEST LOG DROPPED %d row(s): the queue and the spool are both full (%s)", self._unreported, why)
            self._unreported, self._last_drop_log = 0, now

    # --- the writer -----------------------------------------------------------------------------

    async def start(self) -> None:
        # Nothing here may stop the gateway from starting: the log waits for its store, requests do not.
        try:
            await asyncio.to_thread(self.store.setup)
        except Exception as error:
            log.warning("request log store unavailable at start; spooling until it answers: %s", error)
            self._down_until = time.monotonic() + self.settings.replay_interval_s
        else:
            try:
                await asyncio.to_thread(self._replay)  # first of all, what a previous process left behind
            except Exception:
                log.exception("request log: replaying the spool at start failed; retrying later")
        self._task = asyncio.create_task(self._run())

    async def _wait(self, timeout_s: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=timeout_s)

    async def _run(self) -> None:
        size = self.settings.batch_size
        backlog = False  # the last batch was full: write the next at once
        while True:
            if not self._queue and not self._stopping:
                await self._wait(self.settings.replay_interval_s)
            if 0 < len(self._queue) < size and not (self._stopping or self._hurry or backlog):
                # Let the batch fill: a batch's fixed costs (the thread hand-off, the transaction)
                # are then shared by its rows instead of paid by each request.
                await self._wait(self.settings.flush_interval_s)
            self._hurry = False
            if not self._queue and self._stopping:
                return
            batch = [self._queue.popleft() for _ in range(min(size, len(self._queue)))]
            backlog = len(batch) == size
            try:
                if batch:
                    await asyncio.to_thread(self._persist, batch)
                await self._housekeeping()
            except Exception:  # the writer must outlive any one bad batch
                log.exception("request log writer iteration failed")
            if batch:
                self._handled += len(batch)
                async with self._progress:
                    self._progress.notify_all()

    async def _housekeeping(self) -> None:
        now = time.monotonic()
        if now >= self._down_until and (self._down_until > 0 or self._spool_dirty):
            await asyncio.to_thread(self._replay)
        if now - self._last_maintained >= MAINTAIN_INTERVAL_S and now >= self._down_until:
            self._last_maintained = now
            try:
                await asyncio.to_thread(self.store.maintain, time.time())
            except StoreUnavailable as error:
                log.warning("request log maintenance (partitions, retention) failed: %s", error)
                self._last_maintained = now - MAINTAIN_INTERVAL_S + self.settings.replay_interval_s

    def _persist(self, records: list[RequestRecord]) -> None:
        """In a thread: rows built, then the store, else the spool, else (disk full) dropped."""
        rows: list[RowData] = []
        for record in records:
            try:
                rows.append(row_of(record))
            except Exception:
                log.exception("request log: could not build the row of request %s", record.request_id)
                self._drop(1, "unbuildable row")
        if not rows:
            return
        if time.monotonic() >= self._down_until:
            try:
                self.store.write(rows)
                if self._unsynced:
                    self._unsynced = False
                    self.spool.sync()
                return
            except RowsRejected as error:
                self.metrics.request_log_dropped.inc(error.count)
                log.error("REQUEST LOG: the store refused %d row(s) for their data; the rest are stored", error.count)
                return
            except StoreUnavailable as error:
                self._store_failed(error)
        try:
            self.spool.append(rows, sync=True)
            self._unsynced, self._spool_dirty = False, True
        except SpoolFull as error:
            self._drop(len(rows), str(error))

    def _store_failed(self, error: Exception) -> None:
        if self._down_until == 0.0:
            log.warning("request log store failed, spooling to %s: %s", self.spool.path, error)
        self._down_until = time.monotonic() + self.settings.replay_interval_s

    def _replay(self) -> None:
        """In a thread: every claimed spool file into the store; a file is deleted once all of it
        is in. Idempotent, so a half-replayed file is simply replayed again."""
        replayed = 0
        self._spool_dirty = False  # before claiming: an append from now on marks it again
        try:
            if self._down_until > 0.0:
                # Also the probe that the store is back, and the schema for a store that was
                # down when this process started (setup is idempotent).
                self.store.setup()
            # Files a dead process claimed are taken over by the first replay that reaches the store.
            for path in self.spool.claim(orphans=not self._orphans_done):
                for batch in read_batches(path, self.settings.batch_size):
                    try:
                        self.store.write(batch)
                    except RowsRejected as error:
                        self.metrics.request_log_dropped.inc(error.count)
                        log.error("REQUEST LOG: the store refused %d spooled row(s) for their data", error.count)
                    replayed += len(batch)
                path.unlink(missing_ok=True)
        except StoreUnavailable as error:
            self._spool_dirty = True
            self._store_failed(error)
            return
        self._orphans_done = True
        if self._down_until > 0.0:
            log.warning("request log store is back; replayed %d spooled row(s)", replayed)
        self._down_until = 0.0

    # --- readers and shutdown -------------------------------------------------------------------

    async def flush(self, timeout_s: float = 5.0) -> None:
        """Wait until every record queued before this call is written or spooled, so a reader in
        this process sees what it was just answered. Gives up quietly after `timeout_s`."""
        target = self._enqueued
        if self._task is None or self._handled >= target:
            return
        self._hurry = True
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s), self._progress:
                await self._progress.wait_for(lambda: self._handled >= target)

    async def close(self) -> None:
        """Write what is queued (or spool it), one last replay, then close the store."""
        self._stopping = self._hurry = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._spool_dirty and time.monotonic() >= self._down_until:
            await asyncio.to_thread(self._replay)
        await asyncio.to_thread(self.store.close)


def default_dir(ledger: LedgerSettings) -> Path:
    """Where the SQLite log and the spool go unless `request_log:` places them: beside the ledger's
    SQLite file when there is one (embedded ledger) or `ledger.path` is set; with a Redis ledger
    and no `ledger.path`, the gateway's data dir (TTC_DATA_DIR, else ~/.local/share/ttc-gateway),
    never whatever the working directory happens to be."""
    if ledger.redis_url is None or "path" in ledger.model_fields_set:
        return Path(ledger.path).parent
    from gateway.defaults import data_dir

    return data_dir()


def open_request_log(settings: RequestLogSettings, ledger: LedgerSettings, metrics: Metrics) -> RequestLog | None:
    """The configured store, or None when `request_log.enabled` is false."""
    if not settings.enabled:
        return None
    where = default_dir(ledger)
    store: RequestStore
    if settings.postgres_url:
        from gateway.requestlog.postgres_store import PostgresRequestStore

        # The URL may carry a password, so it may come from the environment like other secrets.
        store = PostgresRequestStore(resolve_secret(settings.postgres_url), settings.retention_days, settings.store_timeout_s)
    else:
        from gateway.requestlog.sqlite_store import SqliteRequestStore

        store = SqliteRequestStore(settings.sqlite_path(where), settings.retention_days)
    spool = RequestSpool(settings.spool_file(where), settings.spool_max_bytes)
    return RequestLog(store, spool, settings, metrics)
