"""`POST /v1/responses` and `GET /v1/responses/{id}`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from starlette.responses import Response

from gateway.edge import parse_body, tenant_principal
from gateway.errors import not_found
from gateway.pipeline.chat import chat_completion
from gateway.responses.dialect import ResponsesDialect
from gateway.responses.request import ResponsesRequest, to_chat
from gateway.runtime import GatewayRuntime

ENDPOINT = "/v1/responses"


def mount(app: FastAPI, runtime: GatewayRuntime, error_response: Callable[[Exception], Response]) -> Callable[[Request], Awaitable[Response]]:
    """Mount GET /v1/responses/{id}; return the POST handler, which the app serves on its fast path."""

    async def responses(request: Request) -> Response:
        try:
            state = runtime.state
            principal = tenant_principal(runtime, request)
            body = await parse_body(request, ResponsesRequest, state.config.server.max_body_bytes)
            return await chat_completion(state, principal, to_chat(body), request.state.request_id, ResponsesDialect(body), ENDPOINT)
        except Exception as error:  # every failure becomes an OpenAI-format error, never a 500 page
            return error_response(error)

    @app.get("/v1/responses/{response_id}")
    async def stored_response(response_id: str, request: Request) -> Response:
        tenant_principal(runtime, request)
        raise not_found(f"Response '{response_id}' is not stored: this gateway keeps no responses, so it can neither "
                        "return one nor continue from it (previous_response_id).")

    return responses
