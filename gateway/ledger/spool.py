"""The ledger spool: settles and releases the store could not take, kept on local disk until it can.

An append-only file of JSON lines, each fsync'd before the caller moves on:

    {"v": 1, "id": "<uuid>", "op": "settle" | "release", "store": "<store id>", "at": <unix s>,
     "hold": {"rid": "...", "tenant": "...", "key": "..." | null, "amount": <usd>,
              "created_at": <unix s>, "expires_at": <unix s>},
     "actual": <usd>}                                               (settle only)

A record carries all its replay needs, even for a hold the store no longer knows (lost with the
last second of an `everysec` AOF): tenant, API key, the reservation time (which fixes the
buckets charged) and the amount. Replays are idempotent on the reservation id, so a record
replayed twice, or one whose first attempt did reach the store after all, is charged once.
`store` names the ledger the record belongs to (see `store_id`); a ledger replays only its own.

Several processes may share one file (workers on one machine, or a process that starts while
the previous one's records are still there): every access holds an exclusive flock, and
compaction replaces the file by rename, so a writer that locked a file the path no longer names
opens the path again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .base import Hold
from .settings import LedgerSettings

log = logging.getLogger("gateway.ledger")

Op = Literal["settle", "release"]


def store_id(settings: LedgerSettings) -> str:
    """A short name for the store a ledger writes to (no secret from the URL leaks into it)."""
    if settings.redis_url:
        ident = f"redis|{settings.redis_url}|{settings.key_prefix}"
    else:
        ident = f"sqlite|{Path(settings.path).resolve()}"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def spool_path(settings: LedgerSettings) -> Path:
    """`ledger.spool_path`, or a file named after the store beside the SQLite file's path."""
    if settings.spool_path:
        return Path(settings.spool_path)
    return Path(settings.path).parent / f"ttc-ledger-spool-{store_id(settings)}.jsonl"


@dataclass(frozen=True)
class SpoolRecord:
    op: Op
    hold: Hold
    store: str
    actual_usd: float | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    at: float = field(default_factory=time.time)

    def encode(self) -> bytes:
        h = self.hold
        body: dict[str, object] = {
            "v": 1, "id": self.id, "op": self.op, "store": self.store, "at": self.at,
            "hold": {"rid": h.reservation_id, "tenant": h.tenant_id, "key": h.key_id, "amount": h.amount_usd,
                     "created_at": h.created_at, "expires_at": h.expires_at},
        }
        if self.actual_usd is not None:
            body["actual"] = self.actual_usd
        return json.dumps(body, separators=(",", ":")).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> SpoolRecord:
        body = json.loads(line)
        h = body["hold"]
        op = body["op"]
        if op not in ("settle", "release"):
            raise ValueError(f"unknown spool op {op!r}")
        hold = Hold(reservation_id=str(h["rid"]), tenant_id=str(h["tenant"]), amount_usd=float(h["amount"]),
                    key_id=None if h.get("key") is None else str(h["key"]), created_at=float(h["created_at"]),
                    expires_at=float(h["expires_at"]))
        return cls(op=op, hold=hold, store=str(body["store"]), actual_usd=float(body["actual"]) if op == "settle" else None,
                   id=str(body["id"]), at=float(body["at"]))


def _fsync_dir(path: Path) -> None:
    # A new or renamed file survives a crash only once its directory entry is on disk too.
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_all(fd: int) -> bytes:
    chunks, offset = [], 0
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


class Spool:
    """The file at `path`; blocking calls (run them off the event loop where it matters)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def exists(self) -> bool:
        return self.path.exists()

    @contextmanager
    def _locked(self, flags: int) -> Iterator[int]:
        """The file the path names now, opened (created if need be) and exclusively locked."""
        while True:
            fd = os.open(self.path, flags | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                mine = os.fstat(fd)
                try:
                    now = os.stat(self.path)
                except FileNotFoundError:
                    continue  # unlinked by a compaction while we waited: open the path again
                if (now.st_ino, now.st_dev) == (mine.st_ino, mine.st_dev):
                    yield fd
                    return
            finally:
                os.close(fd)  # also drops the lock

    def append(self, record: SpoolRecord) -> None:
        """Durably add one record: on disk (file and directory entry) when this returns."""
        line = record.encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked(os.O_RDWR | os.O_APPEND) as fd:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # after a line torn by a crash, start a fresh one
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
            if size == 0:
                _fsync_dir(self.path)

    def read(self) -> tuple[list[SpoolRecord], int]:
        """Every readable record, oldest first, and how many lines could not be read."""
        if not self.exists():
            return [], 0
        with self._locked(os.O_RDONLY) as fd:
            data = _read_all(fd)
        records, bad = [], 0
        for line in data.splitlines():
            if not line.strip():
                continue
            try:
                records.append(SpoolRecord.decode(line))
            except (ValueError, KeyError, TypeError):
                bad += 1
                log.error("ledger spool %s: unreadable record dropped: %r", self.path, line[:500])
        return records, bad

    def remove(self, done: set[str]) -> int:
        """Drop the records whose ids are in `done` (and unreadable lines); delete the file once
        nothing is left. Returns how many records remain."""
        if not self.exists():
            return 0
        with self._locked(os.O_RDWR) as fd:
            keep = []
            for line in _read_all(fd).splitlines():
                try:
                    if line.strip() and SpoolRecord.decode(line).id not in done:
                        keep.append(line + b"\n")
                except (ValueError, KeyError, TypeError):
                    pass  # logged by read()
            if not keep:
                os.unlink(self.path)
            else:
                tmp = self.path.with_name(self.path.name + ".tmp")
                with open(tmp, "wb") as out:
                    out.writelines(keep)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, self.path)
            _fsync_dir(self.path)
            return len(keep)


__all__ = ["Spool", "SpoolRecord", "spool_path", "store_id"]
