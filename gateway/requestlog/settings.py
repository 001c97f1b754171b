"""The `request_log:` section of the gateway config."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class RequestLogSettings(BaseModel):
    """Where request rows go. No `postgres_url`: a SQLite file at `path` (default: beside the
    embedded ledger's file, so the built-in defaults log with no set-up)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    # `os.environ/NAME` reads it from the environment (the URL may carry a password).
    postgres_url: str | None = Field(default=None, min_length=1)
    path: str | None = None
    # Rows older than this are dropped: whole daily partitions in PostgreSQL, never a bulk DELETE.
    retention_days: int = Field(default=30, ge=1)
    # The in-memory queue between requests and the writer; when full, rows go to the spool.
    queue_size: int = Field(default=10000, ge=1)
    batch_size: int = Field(default=500, ge=1)
    # How long the writer waits to fill a batch once it has a row.
    flush_interval_s: float = Field(default=0.2, gt=0)
    # Rows the store could not take wait here (JSON lines, fsync'd per batch) until it answers.
    spool_path: str | None = None
    spool_max_bytes: int = Field(default=1 << 30, ge=1024)
    replay_interval_s: float = Field(default=2.0, gt=0)
    # A store call that takes longer fails, and its batch goes to the spool.
    store_timeout_s: float = Field(default=5.0, gt=0)

    # `default_dir`: where files go that the section does not place (`writer.default_dir`: beside
    # the SQLite ledger, or the gateway's data dir; never just the working directory).
    def sqlite_path(self, default_dir: Path) -> Path:
        return Path(self.path) if self.path else default_dir / "ttc-requests.db"

    def spool_file(self, default_dir: Path) -> Path:
        if self.spool_path:
            return Path(self.spool_path)
        base = Path(self.path).parent if self.path else default_dir
        return base / "ttc-requests.spool.jsonl"
