"""The request log's spool: rows the store could not take (or the queue had no room for), kept on
local disk until the store answers.

An append-only file of JSON lines, one `LogRow` each. The writer's batches are fsync'd before it
moves on; rows that overflow the queue are appended from the event loop without an fsync (a
write to the page cache, microseconds; the next batch's fsync covers them), so a full queue never
blocks a request. Several processes may share the file: every append holds an exclusive flock.
Replay first claims the file by renaming it (`<path>.replay-<pid>-<n>`), so appends made while
it replays go to a fresh file; a claimed file is deleted only once the store took all of it, and
one left by a dead process is claimed again at the next start. Replays are idempotent (see
`store.py`), so a file replayed twice costs nothing but time.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
from pydantic import ValidationError

from gateway.requestlog.row import LogRow, RowData, row_data

log = logging.getLogger("ttc.requestlog")

_claims = itertools.count()


class SpoolFull(Exception):
    """The spool is at its size limit, or the disk refused the write."""


class RequestSpool:
    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()  # the loop's overflow appends and the writer thread's batches

    def append(self, rows: list[RowData], *, sync: bool) -> None:
        data = b"".join(orjson.dumps(row) + b"\n" for row in rows)
        with self._lock:
            fd = self._open_locked()
            try:
                if os.fstat(fd).st_size + len(data) > self.max_bytes:
                    raise SpoolFull(f"{self.path} is at its {self.max_bytes}-byte limit")
                os.write(fd, data)
                if sync:
                    os.fsync(fd)
            except OSError as error:  # ENOSPC: the disk is full
                raise SpoolFull(str(error)) from error
            finally:
                os.close(fd)

    def _open_locked(self) -> int:
        """The live file, opened and flocked; reopened if a replay renamed it while we waited."""
        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as error:
                raise SpoolFull(str(error)) from error
            try:
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)

    def sync(self) -> None:
        """fsync what overflow appends left in the page cache."""
        with self._lock:
            try:
                fd = os.open(self.path, os.O_WRONLY)
            except FileNotFoundError:
                return
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def claim(self, orphans: bool = False) -> list[Path]:
        """Files to replay: this process's earlier claims, any others' when `orphans` (at start), and
        the live file, renamed so that new appends start a fresh one."""
        pattern = f"{self.path.name}.replay-*" if orphans else f"{self.path.name}.replay-{os.getpid()}-*"
        claimed = sorted(self.path.parent.glob(pattern)) if self.path.parent.exists() else []
        with self._lock:
            if self.path.exists() and self.path.stat().st_size > 0:
                target = self.path.with_name(f"{self.path.name}.replay-{os.getpid()}-{next(_claims)}")
                fd = os.open(self.path, os.O_RDONLY)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)  # no other process is mid-append
                    os.rename(self.path, target)
                finally:
                    os.close(fd)
                claimed.append(target)
        return claimed

    def pending(self) -> bool:
        try:
            return self.path.stat().st_size > 0 or any(self.path.parent.glob(f"{self.path.name}.replay-{os.getpid()}-*"))
        except FileNotFoundError:
            return any(self.path.parent.glob(f"{self.path.name}.replay-{os.getpid()}-*")) if self.path.parent.exists() else False


def read_batches(path: Path, size: int) -> Iterator[list[RowData]]:
    """The rows of a claimed file, `size` at a time (constant memory). A torn last line (a crash
    mid-append) or a corrupt one is logged and skipped, never replayed as garbage."""
    batch: list[RowData] = []
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                batch.append(row_data(LogRow.model_validate(orjson.loads(line))))  # disk is a boundary
            except (orjson.JSONDecodeError, ValidationError):
                log.error("request log spool %s: skipping unreadable line %d", path, number)
                continue
            if len(batch) >= size:
                yield batch
                batch = []
    if batch:
        yield batch
