"""HTTP surface: OpenAI-compatible endpoints, health, metrics and the admin API."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway import admin
from gateway.auth import Principal, bearer_token
from gateway.chat import chat_completion
from gateway.errors import GatewayError, body_too_large, internal_error, invalid_api_key, invalid_request, ledger_unavailable
from gateway.ledger import LedgerUnavailable
from gateway.routing import named_model
from gateway.runtime import ConfigSource, GatewayRuntime
from gateway.schemas import ChatCompletionRequest, EmbeddingRequest
from gateway.upstream import UpstreamError

log = logging.getLogger("ttc.app")

M = TypeVar("M", bound=BaseModel)


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json", headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise body_too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise body_too_large(limit)  # chunked bodies carry no content-length
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_body(request: Request, model: type[M], limit: int) -> M:
    raw = await read_body(request, limit)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise invalid_request(f"We could not parse the JSON body of your request: {error}") from None
    if not isinstance(data, dict):
        raise invalid_request("The request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise invalid_request(f"Invalid value for '{param}': {first['msg']}", param=param) from None


def authenticate(runtime: GatewayRuntime, request: Request) -> Principal:
    token = bearer_token(request.headers.get("authorization"))
    principal = runtime.state.keys.lookup(token) if token else None
    if principal is None:
        raise invalid_api_key()
    return principal


def tenant_principal(runtime: GatewayRuntime, request: Request) -> Principal:
    principal = authenticate(runtime, request)
    if principal.tenant is None:
        raise GatewayError(403, "The admin key cannot make model requests; use a tenant key.", type="permission_error", code="admin_key_not_allowed")
    return principal


CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})


class GatewayApp(FastAPI):
    """FastAPI for every endpoint but one: chat-completion POSTs go straight to their handler.

    The chat route is the hot path. Starlette's middleware stack, router matching and exception
    wrappers cost about a tenth of a millisecond of CPU per request and do nothing for it, because
    the handler validates its own input and maps every error to an OpenAI-format response itself.
    """

    chat_handler: Callable[[Request], Awaitable[Response]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.chat_handler is not None and scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in CHAT_PATHS:
            response = await self.chat_handler(Request(scope, receive, send))
            await response(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def error_response(error: Exception) -> Response:
    """The OpenAI-format response for any exception a handler lets through."""
    if isinstance(error, GatewayError):
        return error.response()
    if isinstance(error, LedgerUnavailable):
        return ledger_unavailable().response()
    if isinstance(error, UpstreamError):
        return error.to_gateway_error("?").response()
    log.error("unhandled error", exc_info=error)
    return internal_error().response()


def create_app(source: ConfigSource | None = None, runtime: GatewayRuntime | None = None) -> FastAPI:
    runtime = runtime or GatewayRuntime(source or ConfigSource())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        runtime.install_sighup()
        try:
            yield
        finally:
            await runtime.close()

    app = GatewayApp(title="ttc-gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.runtime = runtime

    async def _known_error(_request: Request, error: Exception) -> Response:
        return error_response(error)

    for handled in (GatewayError, LedgerUnavailable, UpstreamError):
        app.add_exception_handler(handled, _known_error)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, error: RequestValidationError) -> Response:
        return invalid_request(f"Invalid request: {error.errors()[0].get('msg', 'bad input')}").response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, error: StarletteHTTPException) -> Response:
        code = "not_found" if error.status_code == 404 else "method_not_allowed" if error.status_code == 405 else None
        return GatewayError(error.status_code, str(error.detail), code=code).response()

    app.add_exception_handler(Exception, _known_error)

    async def chat(request: Request) -> Response:
        try:
            state = runtime.state
            principal = tenant_principal(runtime, request)
            body = await parse_body(request, ChatCompletionRequest, state.config.server.max_body_bytes)
            return await chat_completion(state, principal, body)
        except Exception as error:  # every failure becomes an OpenAI-format error, never a 500 page
            return error_response(error)

    app.chat_handler = chat
    # Also as routes, so that other methods on these paths get the usual 405.
    for path in CHAT_PATHS:
        app.router.add_route(path, chat, methods=["POST"])

    @app.get("/v1/models")
    @app.get("/models")
    async def models(request: Request) -> Response:
        principal = tenant_principal(runtime, request)
        assert principal.tenant is not None
        created = int(time.time())
        data = [{"id": m.name, "object": "model", "created": created, "owned_by": "ttc-gateway"} for m in runtime.state.visible_models(principal.tenant)]
        if runtime.state.router is not None:
            data.append({"id": "auto", "object": "model", "created": created, "owned_by": "ttc-gateway"})
        return json_response({"object": "list", "data": data})

    @app.post("/v1/embeddings")
    @app.post("/embeddings")
    async def embeddings(request: Request) -> Response:
        from gateway.embeddings import embed

        state = runtime.state
        principal = tenant_principal(runtime, request)
        body = await parse_body(request, EmbeddingRequest, state.config.server.max_body_bytes)
        assert principal.tenant is not None
        model = named_model(state, principal.tenant, body.model, mode="embedding")
        return await embed(state, principal, model, body)

    @app.get("/health/live")
    async def live() -> Response:
        return json_response({"status": "ok"})

    @app.get("/health/ready")
    @app.get("/health")
    async def ready() -> Response:
        if not runtime.ready:
            return json_response({"status": "starting"}, status=503)
        state = runtime.state
        checks: dict[str, Any] = {"config": True, "models": len(state.config.models)}
        try:
            await state.ledger.ping()
            checks["ledger"] = True
        except Exception:  # any failure to reach the store means not ready
            checks["ledger"] = False
        ok = checks["ledger"] and checks["models"] > 0
        return json_response({"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        await runtime.inflight.wait_settled()  # answers already sent are counted
        return Response(runtime.metrics.render(), media_type=runtime.metrics.content_type)

    admin.mount(app, runtime, authenticate, parse_body)
    return app
