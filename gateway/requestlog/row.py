"""A request's row: what the store keeps and the API returns. Built in the writer's thread, not
on the event loop, so hashing a long prompt never delays a request."""

from __future__ import annotations

import hashlib
from typing import Any, TypedDict, cast

import orjson
from pydantic import BaseModel, ConfigDict

from gateway.pipeline.observe import RequestRecord

JsonObject = dict[str, object]


class CallRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    role: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class LogRow(BaseModel):
    """One request. `messages`/`response_text`/`response_tool_calls` (the assistant's answer, in the
    chat form, so a conversation can be continued from it) only when the tenant opted in (`log_content`);
    their SHA-256 always (of the canonical messages JSON, keys sorted), so repeats can be counted
    without keeping the text. The API key itself is never here, only its short `key_id`."""

    model_config = ConfigDict(extra="forbid")

    request_id: str
    time: float  # unix seconds at arrival
    tenant: str
    key_id: str
    endpoint: str
    requested_model: str
    served_model: str
    status: str
    error_code: str | None = None
    router_version: str | None = None
    router: JsonObject | None = None
    explored: bool = False
    propensity: float | None = None
    strategy: str | None = None
    strategy_n: int | None = None
    degraded: bool = False
    calls: list[CallRow] = []
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float
    first_byte_s: float | None = None
    log_content: bool = False
    prompt_sha256: str | None = None
    response_sha256: str | None = None
    messages: list[JsonObject] | None = None
    response_text: str | None = None
    response_tool_calls: list[JsonObject] | None = None


class CallData(TypedDict):
    model: str
    role: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class RowData(TypedDict):
    """A LogRow's fields as the writer carries them: queue to store or spool, unvalidated."""

    request_id: str
    time: float
    tenant: str
    key_id: str
    endpoint: str
    requested_model: str
    served_model: str
    status: str
    error_code: str | None
    router_version: str | None
    router: dict[str, Any] | None
    explored: bool
    propensity: float | None
    strategy: str | None
    strategy_n: int | None
    degraded: bool
    calls: list[CallData]
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float
    first_byte_s: float | None
    log_content: bool
    prompt_sha256: str | None
    response_sha256: str | None
    messages: list[dict[str, Any]] | None
    response_text: str | None
    response_tool_calls: list[dict[str, Any]] | None


def row_data(row: LogRow) -> RowData:
    """A validated row (read back from a spool file) in the writer's form."""
    return cast(RowData, row.model_dump())


class Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    score: float
    label: str | None = None
    comment: str | None = None
    time: float


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def prompt_hash(messages: list[dict[str, object]] | None) -> str | None:
    if messages is None:
        return None
    return sha256_hex(orjson.dumps(messages, option=orjson.OPT_SORT_KEYS))


def row_of(record: RequestRecord) -> RowData:
    """The stored form of a record. A TypedDict, not a LogRow: the record is already typed (a
    frozen dataclass the pipeline built), and pydantic construction cost ~25 µs of CPU per
    request here; LogRow validates at the boundaries instead (spool files, store reads)."""
    router = record.router
    version = router.get("version") if router else None
    propensity = router.get("propensity") if router else None
    calls: list[CallData] = [{"model": c.model, "role": c.role, "prompt_tokens": c.prompt_tokens,
                              "completion_tokens": c.completion_tokens, "cost_usd": c.cost_usd} for c in record.calls]
    return {
        "request_id": record.request_id, "time": record.time, "tenant": record.tenant_id, "key_id": record.key_id,
        "endpoint": record.endpoint, "requested_model": record.requested_model, "served_model": record.served_model,
        "status": record.status, "error_code": record.error_code,
        "router_version": str(version) if version is not None else None, "router": router,
        "explored": bool(router.get("explored", False)) if router else False,
        "propensity": float(propensity) if isinstance(propensity, (int, float)) else None,
        "strategy": record.strategy, "strategy_n": record.strategy_n, "degraded": record.degraded, "calls": calls,
        "prompt_tokens": sum(c.prompt_tokens for c in record.calls),
        "completion_tokens": sum(c.completion_tokens for c in record.calls),
        "cost_usd": sum(c.cost_usd for c in record.calls), "latency_s": record.latency_s,
        "first_byte_s": record.first_byte_s, "log_content": record.log_content,
        "prompt_sha256": prompt_hash(record.messages),
        "response_sha256": sha256_hex(record.response_text.encode()) if record.response_text is not None else None,
        "messages": record.messages if record.log_content else None,
        "response_text": record.response_text if record.log_content else None,
        "response_tool_calls": record.response_tool_calls if record.log_content else None,
    }
