"""The `ledger:` section of the gateway config."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class LedgerSettings(BaseModel):
    """Where budgets and rate limits live, and how the gateway behaves when that store is down.

    ``redis_url`` selects the backend: ``None`` means the embedded SQLite ledger at ``path``
    (one machine, any number of processes); a ``redis://`` / ``rediss://`` URL means a shared
    standalone Redis; ``redis+cluster://host:port`` (or ``rediss+cluster://``) or ``cluster: true``
    means Redis Cluster, with the URL naming any one seed node.
    """

    model_config = ConfigDict(extra="forbid")

    redis_url: str | None = None
    path: str = "./ttc-ledger.db"
    # Fail-closed is the default because fail-open means unbounded spend while the store is down.
    fail_open: bool = False
    reservation_ttl_s: float = Field(default=300.0, gt=0)
    # What a hold that outlives its TTL unsettled costs (its gateway crashed, or lost the ledger
    # for longer than the TTL). `charge` (default, conservative): its reserved worst case, because
    # the upstream may have billed the call; a late settle for it later corrects the charge to
    # the actual cost. `refund`: nothing; the money returns to the window (a crashed gateway's
    # in-flight calls are then never charged).
    expired_holds: Literal["charge", "refund"] = "charge"
    # Settles and releases that cannot reach the store wait here (append-only, fsync'd) and are
    # replayed when it answers again, also by the next process to start. Default: a file named
    # after the store, in the folder of `path` (the SQLite file), e.g. /var/lib/ttc in the image.
    spool_path: str | None = None
    spool_replay_interval_s: float = Field(default=1.0, gt=0)
    key_prefix: str = Field(default="ttc", min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    # Treat redis_url as a Redis Cluster seed even without the `+cluster` scheme suffix.
    cluster: bool = False
    # A ledger call sits on every request's critical path, so a slow store must fail fast
    # (-> 503 or fail-open) rather than hang the request.
    redis_socket_timeout_s: float = Field(default=2.0, gt=0)
    redis_connect_timeout_s: float = Field(default=2.0, gt=0)
    redis_max_connections: int = Field(default=256, ge=1)
    # How long a settled/released reservation id is remembered, so that a duplicate settle
    # arriving within this time charges nothing; also how long an expired hold's charge is kept
    # correctable by a late settle. Must exceed the longest request and the longest outage after
    # which a spooled settle is replayed.
    closed_retention_s: float = Field(default=3600.0, gt=0)
    # SQLite: how long a writer waits for another process's transaction before giving up.
    sqlite_busy_timeout_s: float = Field(default=10.0, gt=0)
    # SQLite `synchronous`: NORMAL in WAL mode survives process crashes, FULL also power loss.
    sqlite_synchronous: str = Field(default="NORMAL", pattern=r"^(NORMAL|FULL)$")
