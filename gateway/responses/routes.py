"""`POST /v1/responses` and `GET /v1/responses/{id}`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response

from gateway.edge import parse_body, tenant_principal
from gateway.pipeline.chat import chat_completion
from gateway.responses.dialect import ResponsesDialect, stored_response
from gateway.responses.request import ResponsesRequest, to_chat
from gateway.responses.stored import NotStored, continued_conversation, find_stored, lookup_not_stored, previous_not_stored
from gateway.runtime import GatewayRuntime

ENDPOINT = "/v1/responses"


def mount(app: FastAPI, runtime: GatewayRuntime, error_response: Callable[[Exception], Response]) -> Callable[[Request], Awaitable[Response]]:
    """Mount GET /v1/responses/{id}; return the POST handler, which the app serves on its fast path."""

    async def responses(request: Request) -> Response:
        try:
            state = runtime.state
            principal = tenant_principal(runtime, request)
            body = await parse_body(request, ResponsesRequest, state.config.server.max_body_bytes)
            previous = None
            if body.previous_response_id is not None:
                try:
                    row = await find_stored(runtime, principal, body.previous_response_id)
                except NotStored as why:
                    raise previous_not_stored(why) from None
                previous = continued_conversation(row, body.instructions)
            return await chat_completion(state, principal, to_chat(body, previous), request.state.request_id,
                                         ResponsesDialect(body), ENDPOINT)
        except Exception as error:  # every failure becomes an OpenAI-format error, never a 500 page
            return error_response(error)

    @app.get("/v1/responses/{response_id}")
    async def stored(response_id: str, request: Request) -> Response:
        principal = tenant_principal(runtime, request)
        try:
            row = await find_stored(runtime, principal, response_id)
        except NotStored as why:
            raise lookup_not_stored(why) from None
        return Response(orjson.dumps(stored_response(row)), media_type="application/json")

    return responses
