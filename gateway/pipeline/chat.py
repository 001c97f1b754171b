"""Chat completions through the one pipeline: plan → admit → execute → respond → observe.

(Parsing and authentication happen at the HTTP edge, gateway/app.py.)
"""

from __future__ import annotations

from starlette.responses import Response

from gateway.auth import TenantPrincipal
from gateway.errors import GatewayError
from gateway.pipeline.context import RequestContext
from gateway.pipeline.finish import finish
from gateway.pipeline.native import NativeExecutor, NativeRoute, natively_served
from gateway.pipeline.plain import PlainExecutor
from gateway.pipeline.plan import RequestPlan, plan_chat
from gateway.pipeline.respond import OPENAI_CHAT, Dialect, json_answer, stream_answer
from gateway.pipeline.strategy import StrategyExecutor
from gateway.schemas import ChatCompletionRequest
from gateway.state import GatewayState

ENDPOINT = "/v1/chat/completions"


async def admit(ctx: RequestContext, estimated_tokens: int) -> None:
    """RPM and TPM for every request: one RPM slot per client request, whatever it runs inside."""
    ctx.estimated_tokens = estimated_tokens
    await ctx.account.admit(estimated_tokens)
    ctx.admitted = True


def executor_for(ctx: RequestContext, plan: RequestPlan, native: NativeRoute | None = None) -> PlainExecutor | StrategyExecutor | NativeExecutor:
    if native is not None and natively_served(native, plan):
        return NativeExecutor(ctx, plan, native)
    if plan.strategy is not None:
        return StrategyExecutor(ctx, plan, plan.strategy)
    return PlainExecutor(ctx, plan)


async def chat_completion(state: GatewayState, principal: TenantPrincipal, request: ChatCompletionRequest,
                          request_id: str, dialect: Dialect = OPENAI_CHAT, endpoint: str = ENDPOINT,
                          native: NativeRoute | None = None) -> Response:
    """Chat completions, or another API translated into one (`dialect` shapes the answer back).
    `native`: the request as its own API, for an upstream that speaks that API itself."""
    ctx = RequestContext.open(state, principal, endpoint, request.model, request_id)
    try:
        plan = await plan_chat(state, principal, request)
        ctx.model = plan.model
        ctx.messages = plan.messages
        ctx.keep_content = request.store is not False
        ctx.router_info = plan.router_info
        ctx.strategy_name = plan.strategy_name
        await admit(ctx, plan.estimated_tokens())
        executor = executor_for(ctx, plan, native)
        if plan.stream:
            return stream_answer(ctx, await executor.open_stream(), plan.include_usage, dialect)
        return json_answer(ctx, await executor.complete(), dialect)
    except GatewayError as error:
        finish(ctx, error.status, error_code=error.code)
        raise
    except Exception:
        finish(ctx, 500, error_code="internal_error")
        raise
    except BaseException:  # cancelled: a shutdown past its grace period, or the client left
        finish(ctx, 499, error_code="cancelled")
        raise
