"""HTTP surface: OpenAI-compatible endpoints, health, metrics and the admin API."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from contracts.environment import apply_environment_defaults
from gateway import admin
from gateway.messages import routes as messages_api
from gateway.messages.dialect import MESSAGES
from gateway.responses import routes as responses_api
from gateway.requestlog import api as request_log_api
from gateway.auth import bearer_token
from gateway.edge import parse_body, tenant_principal
from gateway.pipeline.chat import chat_completion
from gateway.pipeline.embeddings import embeddings as embed
from gateway.request_ids import request_id_of, sending_request_id
from gateway.errors import GatewayError, internal_error, invalid_request, ledger_unavailable
from gateway.ledger import LedgerUnavailable
from gateway.runtime import ConfigSource, GatewayRuntime
from gateway.schemas import ChatCompletionRequest, EmbeddingRequest
from gateway.upstream import UpstreamError

log = logging.getLogger("ttc.app")

def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json", headers=headers)


READY_LEDGER_TIMEOUT_S = 0.8  # /health/ready answers within a second even when the ledger hangs

CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
Handler = Callable[[Request], Awaitable[Response]]


class GatewayApp(FastAPI):
    """FastAPI for every endpoint but the model requests: their POSTs go straight to their handlers.

    Those routes are the hot path. Starlette's middleware stack, router matching and exception
    wrappers cost about a tenth of a millisecond of CPU per request and do nothing for them, because
    each handler validates its own input and maps every error to its API's error shape itself.
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.model_handlers: dict[str, Handler] = {}

    def add_model_route(self, path: str, handler: Handler) -> None:
        self.model_handlers[path] = handler
        # Also as a route, so that other methods on the path get the usual 405.
        self.router.add_route(path, handler, methods=["POST"])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request_id = request_id_of(scope)
            scope.setdefault("state", {})["request_id"] = request_id
            send = sending_request_id(send, request_id)
            handler = self.model_handlers.get(scope["path"]) if scope["method"] == "POST" else None
            if handler is not None:
                response = await handler(Request(scope, receive, send))
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def endpoint_list(app: FastAPI) -> list[str]:
    """`METHOD /path` for every route, the unprefixed aliases of /v1 ones left out."""
    found: list[str] = []
    for route in app.router.routes:
        path, methods = getattr(route, "path", None), sorted(getattr(route, "methods", None) or ())
        if path is None or not path.startswith(("/v1/", "/health", "/metrics", "/admin/")):
            continue
        entry = f"{'|'.join(m for m in methods if m != 'HEAD')} {path}"
        if entry not in found:
            found.append(entry)
    return found


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
    apply_environment_defaults()
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
    async def _http(request: Request, error: StarletteHTTPException) -> Response:
        headers = dict(error.headers or {})  # 405 carries `Allow`
        if error.status_code == 404:
            message = f"Unknown endpoint {request.method} {request.url.path}. Supported: {', '.join(endpoint_list(app))}."
            failure = GatewayError(404, message, code="not_found", headers=headers)
        elif error.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; allowed: {headers.get('Allow', '?')}."
            failure = GatewayError(405, message, code="method_not_allowed", headers=headers)
        else:
            failure = GatewayError(error.status_code, str(error.detail), headers=headers)
        # Anthropic's clients read only their own error shape.
        return MESSAGES.error(failure) if request.url.path.startswith("/v1/messages") else failure.response()

    app.add_exception_handler(Exception, _known_error)

    async def chat(request: Request) -> Response:
        try:
            state = runtime.state
            principal = tenant_principal(runtime, request)
            body = await parse_body(request, ChatCompletionRequest, state.config.server.max_body_bytes)
            return await chat_completion(state, principal, body, request.state.request_id)
        except Exception as error:  # every failure becomes an OpenAI-format error, never a 500 page
            return error_response(error)

    for path in CHAT_PATHS:
        app.add_model_route(path, chat)

    @app.get("/v1/models")
    @app.get("/models")
    async def models(request: Request) -> Response:
        principal = tenant_principal(runtime, request)
        created = int(time.time())
        data = [{"id": m.name, "object": "model", "created": created, "owned_by": "ttc-gateway"} for m in runtime.state.visible_models(principal.tenant)]
        if runtime.state.router is not None:
            data.append({"id": "auto", "object": "model", "created": created, "owned_by": "ttc-gateway"})
        return json_response({"object": "list", "data": data})

    @app.post("/v1/embeddings")
    @app.post("/embeddings")
    async def embeddings(request: Request) -> Response:
        state = runtime.state
        principal = tenant_principal(runtime, request)
        body = await parse_body(request, EmbeddingRequest, state.config.server.max_body_bytes)
        return await embed(state, principal, body, request.state.request_id)

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
            # A frozen store does not refuse, it just never answers: a probe must not wait out
            # the ledger's own (longer) timeouts, or the orchestrator's probe times out instead.
            async with asyncio.timeout(READY_LEDGER_TIMEOUT_S):
                await state.ledger.ping()
            checks["ledger"] = True
        except Exception:  # any failure to reach the store, or a late answer, means not ready
            checks["ledger"] = False
        ok = checks["ledger"] and checks["models"] > 0
        return json_response({"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503)

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        if not runtime.state.may_read_metrics(bearer_token(request.headers.get("authorization"))):
            raise GatewayError(401, "/metrics needs 'Authorization: Bearer <server.metrics_token or the admin key>'.",
                               code="invalid_api_key")
        await runtime.inflight.wait_settled()  # answers already sent are counted
        return Response(runtime.metrics.render(), media_type=runtime.metrics.content_type)

    admin.mount(app, runtime)
    app.add_model_route(messages_api.ENDPOINT, messages_api.mount(app, runtime))
    app.add_model_route(responses_api.ENDPOINT, responses_api.mount(app, runtime, error_response))
    request_log_api.mount(app, runtime)
    return app
