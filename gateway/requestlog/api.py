"""`GET /v1/requests`, `GET /v1/requests/{id}` and `POST /v1/feedback`, mounted like the admin API.

A tenant key sees and scores only its own tenant's rows; any other id is "not found", never
"forbidden", so ids do not leak across tenants. The admin key reads every tenant (optionally one,
with `?tenant=`) but scores nothing: feedback belongs to the tenant that made the request."""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from datetime import UTC, datetime

import orjson
from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from gateway.auth import AdminPrincipal, Principal
from gateway.edge import authenticate, parse_body
from gateway.errors import GatewayError, invalid_request, not_found
from gateway.requestlog.row import Feedback, LogRow
from gateway.requestlog.store import Query, StoreUnavailable
from gateway.requestlog.writer import RequestLog
from gateway.runtime import GatewayRuntime

MAX_LIMIT = 1000


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=200)
    score: float = Field(ge=0, le=1)
    label: str | None = Field(default=None, max_length=200)
    comment: str | None = Field(default=None, max_length=10000)


def _json(payload: object, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def unavailable() -> GatewayError:
    return GatewayError(503, "The request log store is unreachable; retry later.", type="service_unavailable",
                        code="request_log_unavailable")


def parse_time(value: str | None, param: str) -> float | None:
    """Unix seconds or ISO 8601 (a time without a zone is UTC)."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise invalid_request(f"'{param}' must be unix seconds or an ISO 8601 time.", param=param) from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def encode_cursor(row: LogRow) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([row.time, row.request_id])).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[float, str] | None:
    if not cursor:
        return None
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(data, list) and len(data) == 2 and isinstance(data[0], (int, float)) and isinstance(data[1], str):
            return float(data[0]), data[1]
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        pass
    raise invalid_request("'cursor' is not a cursor this endpoint returned.", param="cursor")


def parse_limit(value: str | None) -> int:
    if value is None:
        return 50
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise invalid_request(f"'limit' must be an integer from 1 to {MAX_LIMIT}.", param="limit")
    return int(value)


def feedback_json(feedback: Feedback | None) -> dict[str, object] | None:
    return None if feedback is None else feedback.model_dump()


def mount(app: FastAPI, runtime: GatewayRuntime) -> None:
    def request_log() -> RequestLog:
        if runtime.request_log is None:
            raise not_found("The request log is disabled on this gateway (request_log.enabled: false).")
        return runtime.request_log

    async def settled(principal: Principal, log: RequestLog) -> None:
        # Read-your-writes in this process: the requests already answered are observed and written.
        tenant = None if isinstance(principal, AdminPrincipal) else principal.tenant.id
        await runtime.state.inflight.wait_settled(tenant)
        await log.flush()

    def scope_of(principal: Principal, requested: str | None) -> str | None:
        if isinstance(principal, AdminPrincipal):
            return requested or None
        if requested and requested != principal.tenant.id:
            raise not_found(f"Tenant '{requested}' not found.")
        return principal.tenant.id

    @app.get("/v1/requests")
    async def list_requests(request: Request) -> Response:
        principal = authenticate(runtime, request)
        log = request_log()
        params = request.query_params
        query = Query(tenant=scope_of(principal, params.get("tenant")), since=parse_time(params.get("since"), "since"),
                      until=parse_time(params.get("until"), "until"), model=params.get("model") or None,
                      status=params.get("status") or None, after=decode_cursor(params.get("cursor")),
                      limit=parse_limit(params.get("limit")) + 1)  # one more tells whether a next page exists
        await settled(principal, log)
        try:
            rows = await asyncio.to_thread(log.store.list, query)
        except StoreUnavailable:
            raise unavailable() from None
        more = len(rows) >= query.limit
        rows = rows[: query.limit - 1]
        return _json({"object": "list", "data": [row.model_dump() for row in rows], "has_more": more,
                      "next_cursor": encode_cursor(rows[-1]) if more and rows else None})

    @app.get("/v1/requests/{request_id}")
    async def get_request(request_id: str, request: Request) -> Response:
        principal = authenticate(runtime, request)
        log = request_log()
        await settled(principal, log)
        try:
            found = await asyncio.to_thread(log.store.get, request_id, scope_of(principal, None))
        except StoreUnavailable:
            raise unavailable() from None
        if found is None:
            raise not_found(f"Request '{request_id}' not found.")
        row, feedback = found
        return _json({**row.model_dump(), "feedback": feedback_json(feedback)})

    @app.post("/v1/feedback")
    async def post_feedback(request: Request) -> Response:
        principal = authenticate(runtime, request)
        if isinstance(principal, AdminPrincipal):
            raise GatewayError(403, "Feedback comes from the tenant that made the request; use its key.",
                               type="permission_error", code="admin_key_not_allowed")
        log = request_log()
        body = await parse_body(request, FeedbackBody, runtime.state.config.server.max_body_bytes)
        feedback = Feedback(score=body.score, label=body.label, comment=body.comment, time=time.time())
        await settled(principal, log)
        try:
            stored = await asyncio.to_thread(log.store.put_feedback, principal.tenant.id, body.request_id, feedback)
        except StoreUnavailable:
            raise unavailable() from None
        if not stored:
            raise not_found(f"Request '{body.request_id}' not found.")
        return _json({"request_id": body.request_id, "feedback": feedback_json(feedback)})

