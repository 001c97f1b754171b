"""`POST /v1/messages` and `POST /v1/messages/count_tokens`, every failure in Anthropic's error shape."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response

from gateway.accounting import count_prompt_tokens
from gateway.errors import GatewayError, internal_error, ledger_unavailable
from gateway.edge import parse_body, parse_object, tenant_principal, validated
from gateway.ledger import LedgerUnavailable
from gateway.messages.dialect import MESSAGES
from gateway.messages.native import AnthropicNative
from gateway.messages.request import CountTokensRequest, MessagesRequest, to_chat
from gateway.pipeline.chat import chat_completion
from gateway.routing import AUTO, named_model
from gateway.runtime import GatewayRuntime
from gateway.tokens import count_message_tokens

log = logging.getLogger("ttc.messages")

ENDPOINT = "/v1/messages"


async def in_anthropic_shape(handler: Callable[[], Awaitable[Response]]) -> Response:
    try:
        return await handler()
    except GatewayError as error:
        return MESSAGES.error(error)
    except LedgerUnavailable:
        return MESSAGES.error(ledger_unavailable())
    except Exception:  # an unexpected failure is still Anthropic-shaped, never a bare 500 page
        log.exception("unhandled error on %s", ENDPOINT)
        return MESSAGES.error(internal_error())


def mount(app: FastAPI, runtime: GatewayRuntime) -> Callable[[Request], Awaitable[Response]]:
    """Mount count_tokens; return the /v1/messages handler, which the app serves on its fast path."""

    async def messages(request: Request) -> Response:
        async def handle() -> Response:
            state = runtime.state
            principal = tenant_principal(runtime, request)
            sent = await parse_object(request, state.config.server.max_body_bytes)
            body = validated(MessagesRequest, sent)
            native = AnthropicNative(state.upstreams.anthropic, sent, request.headers)
            return await chat_completion(state, principal, to_chat(body), request.state.request_id, MESSAGES, ENDPOINT, native)

        return await in_anthropic_shape(handle)

    @app.post("/v1/messages/count_tokens")
    async def count_tokens(request: Request) -> Response:
        async def handle() -> Response:
            state = runtime.state
            principal = tenant_principal(runtime, request)
            body = await parse_body(request, CountTokensRequest, state.config.server.max_body_bytes)
            chat = to_chat(body)
            messages = chat.message_dicts()
            if chat.tools:  # part of the prompt upstream too; a coding agent's ~20 tools are most of its input
                messages.append({"role": "system", "content": orjson.dumps(chat.tools).decode()})
            if body.model == AUTO or body.model.startswith(AUTO + ":"):
                tokens = count_message_tokens("openai/auto", messages)
            else:
                tokens = count_prompt_tokens(named_model(state, principal.tenant, body.model), messages)
            return Response(orjson.dumps({"input_tokens": tokens}), media_type="application/json")

        return await in_anthropic_shape(handle)

    return messages
