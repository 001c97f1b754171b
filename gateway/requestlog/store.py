"""The one contract both stores keep (SQLite, PostgreSQL). Calls are blocking: the writer and
the API run them in a thread, never on the event loop.

Writes are idempotent on (request_id, time): a row's time is fixed when the request arrives and
travels with it through the queue and the spool, so a replayed row (or one whose first attempt
did reach the store after all) meets its own copy and is skipped. A client that reuses an
`x-request-id` later gets a second row, not a lost one; reads by id return the newest."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import orjson

from gateway.requestlog.row import CallRow, Feedback, LogRow, RowData

# Column order shared by both stores' INSERTs and SELECTs.
COLUMNS = ("request_id", "time", "tenant", "key_id", "endpoint", "requested_model", "served_model", "status",
           "error_code", "router_version", "router", "explored", "propensity", "strategy", "strategy_n", "degraded",
           "calls", "prompt_tokens", "completion_tokens", "cost_usd", "latency_s", "first_byte_s", "log_content",
           "prompt_sha256", "response_sha256", "messages", "response_text", "response_tool_calls")
JSON_COLUMNS = frozenset({"router", "calls", "messages", "response_tool_calls"})

StoreValue = str | float | int | bool | None


class StoreUnavailable(Exception):
    """The store did not take or answer a call; the writer spools, the API answers 503."""


class RowsRejected(Exception):
    """The store took a batch but refused some of its rows for their data; retrying cannot help."""

    def __init__(self, count: int, reason: str) -> None:
        super().__init__(f"{count} row(s) refused: {reason}")
        self.count = count


@dataclass(frozen=True)
class Query:
    tenant: str | None  # None: every tenant (the admin key)
    since: float | None = None
    until: float | None = None
    model: str | None = None  # the requested or the served model
    status: str | None = None
    after: tuple[float, str] | None = None  # keyset cursor: rows strictly older than (time, request_id)
    limit: int = 50


class RequestStore(Protocol):
    def setup(self) -> None: ...
    def write(self, rows: Sequence[RowData]) -> None: ...
    def maintain(self, now: float) -> None: ...
    def list(self, query: Query) -> list[LogRow]: ...
    def get(self, request_id: str, tenant: str | None) -> tuple[LogRow, Feedback | None] | None: ...
    def put_feedback(self, tenant: str, request_id: str, feedback: Feedback) -> bool: ...
    def iter_rows(self, since: float | None, until: float | None, tenant: str | None) -> Iterator[LogRow]: ...
    def close(self) -> None: ...


def row_values(row: RowData) -> list[StoreValue]:
    values: list[StoreValue] = []
    for column in COLUMNS:
        value = row[column]  # type: ignore[literal-required]
        values.append(orjson.dumps(value).decode() if column in JSON_COLUMNS and value is not None else value)
    return values


def row_from(values: Sequence[object]) -> LogRow:
    data: dict[str, object] = {}
    for column, value in zip(COLUMNS, values, strict=True):
        if column in JSON_COLUMNS and isinstance(value, (str, bytes)):
            value = orjson.loads(value)
        data[column] = value
    calls = data.get("calls")
    data["calls"] = [CallRow.model_validate(c) for c in calls] if isinstance(calls, list) else []
    return LogRow.model_validate(data)


def time_range(since: float | datetime | None, until: float | datetime | None, tenant: str | None, mark: str) -> tuple[str, list[object]]:
    """A WHERE clause (or "") for an export's range; `mark` is the driver's placeholder."""
    where: list[str] = []
    args: list[object] = []
    for clause, value in (("time >= ", since), ("time < ", until), ("tenant = ", tenant)):
        if value is not None:
            where.append(clause + mark)
            args.append(value)
    return (" WHERE " + " AND ".join(where) if where else ""), args
