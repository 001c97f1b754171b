"""`/v1/embeddings`: passed through to embedding-capable models, with the same accounting."""

from __future__ import annotations

from starlette.responses import Response

from gateway.accounting import Account, worst_case_usd
from gateway.auth import Principal
from gateway.config import ModelConfig
from gateway.schemas import EmbeddingRequest
from gateway.state import GatewayState
from gateway.tokens import count_text_tokens
from gateway.upstream import UpstreamError, call_with_fallbacks, fallback_chain

import orjson


def _input_tokens(model: ModelConfig, body: EmbeddingRequest) -> int:
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


async def embed(state: GatewayState, principal: Principal, model: ModelConfig, body: EmbeddingRequest) -> Response:
    account = Account.for_principal(state.ledger, principal, state.inflight)
    tokens = _input_tokens(model, body)
    await account.admit(tokens)
    hold = await account.reserve(worst_case_usd(model, tokens, 1, 0))
    payload = body.model_dump(exclude_none=True, exclude={"model"})
    chain = [m for m in fallback_chain(state.config, model) if m.mode == "embedding"]
    try:
        response, used = await call_with_fallbacks(chain, lambda m: state.upstreams.embed(m, payload), lambda m, e: state.metrics.upstream_errors.labels(m.name, e.kind).inc())
    except UpstreamError as error:
        await account.release(hold)
        raise error.to_gateway_error(model.name) from None
    except BaseException:
        await account.release(hold)
        raise
    prompt_tokens = int((response.get("usage") or {}).get("prompt_tokens") or tokens)
    account.record(used, "embedding", prompt_tokens, 0)
    await account.settle(hold, account.total_cost_usd)
    response["model"] = used.name
    response["usage"] = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    headers = {"x-ttc-cost-usd": f"{account.total_cost_usd:.8f}"}
    return Response(orjson.dumps(response), media_type="application/json", headers=headers)
