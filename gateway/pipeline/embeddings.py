"""`/v1/embeddings` through the same steps as chat: plan → admit → one metered call → respond →
observe."""

from __future__ import annotations

import orjson
from starlette.responses import Response
from strategies import CallRecord

from gateway.accounting import worst_case_usd
from gateway.auth import TenantPrincipal
from gateway.config import ModelConfig
from gateway.errors import GatewayError
from gateway.pipeline.chat import admit
from gateway.pipeline.context import RequestContext
from gateway.pipeline.finish import finish
from gateway.pipeline.metered import MeteredCall
from gateway.pipeline.respond import cost_headers
from gateway.routing import named_model
from gateway.schemas import EmbeddingRequest
from gateway.state import GatewayState
from gateway.tokens import count_text_tokens
from gateway.upstream.base import token_count

ENDPOINT = "/v1/embeddings"


def input_tokens(model: ModelConfig, body: EmbeddingRequest) -> int:
    items = body.input if isinstance(body.input, list) else [body.input]
    total = 0
    for item in items:
        if isinstance(item, str):
            total += count_text_tokens(model.litellm_params.model, item)
        elif isinstance(item, list):
            total += len(item)
        else:
            total += 1
    return total


async def embeddings(state: GatewayState, principal: TenantPrincipal, body: EmbeddingRequest, request_id: str) -> Response:
    ctx = RequestContext.open(state, principal, ENDPOINT, body.model, request_id)
    try:
        model = named_model(state, principal.tenant, body.model, mode="embedding")
        ctx.model = model
        tokens = input_tokens(model, body)
        await admit(ctx, tokens)
        metered = await MeteredCall.reserve(ctx.account, CallRecord(model.name, "embedding", tokens, 0, worst_case_usd(model, tokens, 1, 0)))
        payload = body.model_dump(exclude_none=True, exclude={"model"})
        response, used = await metered.call(lambda: ctx.calls.embed(ctx.calls.chain(model), payload), model.name)
    except GatewayError as error:
        finish(ctx, error.status, error_code=error.code)
        raise
    except BaseException:
        finish(ctx, 499, error_code="cancelled")
        raise
    reported = token_count((response.get("usage") or {}).get("prompt_tokens")) if isinstance(response.get("usage"), dict) else None
    prompt_tokens = reported or tokens
    metered.record(used, "embedding", prompt_tokens, 0)
    response["model"] = used.name
    response["usage"] = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    headers = cost_headers(ctx, used.name, metered.remaining_after_settle())
    finish(ctx, 200, served_model=used.name, settle=metered.settle)
    return Response(orjson.dumps(response), media_type="application/json", headers=headers)
