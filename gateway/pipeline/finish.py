"""The end of every request: settle what is still held, true up the rate limiter's token count to
every internal call, and hand the record to the observers. Runs in the background once the
answer is out (or the request has failed), so the client never waits for the ledger's second
round trip; readers in this process (usage, /metrics) wait for it."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from gateway.pipeline.context import RequestContext
from gateway.pipeline.observe import RequestRecord, notify

Settle = Callable[[], Awaitable[None]]


def finish(ctx: RequestContext, status: int | str, *, served_model: str | None = None, error_code: str | None = None,
           settle: Settle | None = None, first_byte_s: float | None = None) -> None:
    record = RequestRecord(
        request_id=ctx.request_id, time=ctx.wall_time, tenant_id=ctx.tenant_id, key_id=ctx.principal.key_id,
        endpoint=ctx.endpoint, requested_model=ctx.requested_model,
        served_model=served_model or ctx.model_label, status=str(status), error_code=error_code, router=ctx.router_info,
        strategy=ctx.strategy_name, calls=tuple(ctx.account.calls), latency_s=time.perf_counter() - ctx.started,
        first_byte_s=first_byte_s, strategy_n=ctx.strategy_n, degraded=ctx.degraded,
        log_content=ctx.principal.tenant.log_content and ctx.keep_content, messages=ctx.messages,
        response_text=ctx.response_text, response_tool_calls=ctx.response_tool_calls,
    )

    async def finalize() -> None:
        try:
            if settle is not None:
                await settle()
        finally:  # a failed settlement is logged by InFlight; the request is still on record
            notify(ctx.state.observers, record)
            if ctx.admitted:
                await ctx.account.true_up_tokens(ctx.estimated_tokens, ctx.account.total_tokens)

    ctx.state.inflight.spawn_settlement(ctx.tenant_id, finalize())
