"""The respond step: headers, the `ttc` object and SSE framing, the same for every executor."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import orjson
from starlette.responses import Response, StreamingResponse
from strategies import StrategyInfo

from gateway.errors import GatewayError, internal_error, sse_error_event
from gateway.pipeline.context import RequestContext
from gateway.pipeline.finish import Settle, finish
from gateway.upstream import Json

log = logging.getLogger("ttc.respond")

SSE_DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"
STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def sse(payload: Json) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


@dataclass
class Answer:
    """A finished non-streamed answer: an OpenAI chat.completion body, less what this module adds."""

    body: Json
    served_model: str
    remaining_usd: float | None
    strategy: StrategyInfo | None = None
    report: dict[str, Any] = field(default_factory=dict)  # further `ttc` keys (cascade, budget_exhausted)
    settle: Settle | None = None  # what is still held, settled after the answer is sent
    native: bool = False  # the body is in the client's own API (gateway/pipeline/native.py), not a chat completion


class ChunkStream(Protocol):
    """A streamed answer as an executor produces it. `chunks()` yields chat.completion.chunk
    payloads, or None for a keep-alive; the finishing chunk is held back in `final`, because
    the cost rides on it. `close()` stops the upstream work and records what it used."""

    served_model: str
    strategy: StrategyInfo | None
    report: dict[str, Any]
    native: bool  # chunks are the client API's own events (gateway/pipeline/native.py)
    final: Json | None
    failure: GatewayError | None
    settle: Settle | None

    def chunks(self) -> AsyncIterator[Json | None]: ...

    async def close(self) -> None: ...


def ttc_object(ctx: RequestContext, strategy: StrategyInfo | None, report: dict[str, Any]) -> Json:
    account = ctx.account
    return {
        "request_id": ctx.request_id,
        "router": ctx.router_info,
        "strategy": strategy.as_dict() if strategy is not None else None,
        "calls": [{**call.as_dict(), "cost_usd": round(call.cost_usd, 8)} for call in account.calls],
        "cost_usd": round(account.total_cost_usd, 8),
        **report,
    }


def _router_headers(ctx: RequestContext, headers: dict[str, str]) -> dict[str, str]:
    if ctx.router_info:
        headers["x-ttc-router-model"] = str(ctx.router_info["model"])
        headers["x-ttc-router-version"] = str(ctx.router_info["version"])
    return headers


def cost_headers(ctx: RequestContext, served_model: str, remaining_usd: float | None) -> dict[str, str]:
    headers = {"x-ttc-cost-usd": f"{ctx.account.total_cost_usd:.8f}", "x-ttc-model": served_model}
    if remaining_usd is not None:
        headers["x-ttc-budget-remaining-usd"] = f"{remaining_usd:.6f}"
    return headers


def answer_headers(ctx: RequestContext, answer: Answer) -> dict[str, str]:
    headers = cost_headers(ctx, answer.served_model, answer.remaining_usd)
    if answer.strategy is not None:
        headers["x-ttc-strategy"] = answer.strategy.name
    if answer.report.get("budget_exhausted"):
        headers["x-ttc-budget-exhausted"] = "true"
    return _router_headers(ctx, headers)


class StreamEncoder(Protocol):
    """How one API frames a stream: its chunks, its keep-alive, its ending and its error event."""

    def chunk(self, chunk: Json) -> bytes: ...

    def keepalive(self) -> bytes: ...

    def end(self, final: Json | None, first: Json | None) -> list[bytes]:
        """After the upstream is done and charged: the closing frames (usage and `ttc` ride here)."""
        ...

    def error(self, failure: GatewayError) -> bytes: ...


class Dialect(Protocol):
    """One client API over the pipeline: the pipeline thinks in OpenAI chat completions, and a
    dialect shapes its answers, streams and errors for the API the client speaks."""

    def body(self, ctx: RequestContext, answer: Answer) -> Json: ...

    def encoder(self, ctx: RequestContext, stream: ChunkStream, include_usage: bool) -> StreamEncoder: ...

    def error(self, error: GatewayError) -> Response: ...


class OpenAIChat:
    """The OpenAI chat-completions shape, which the pipeline's answers already have."""

    def body(self, ctx: RequestContext, answer: Answer) -> Json:
        body = answer.body
        body["model"] = answer.served_model
        body["usage"] = ctx.account.usage()
        body["ttc"] = ttc_object(ctx, answer.strategy, answer.report)
        return body

    def encoder(self, ctx: RequestContext, stream: ChunkStream, include_usage: bool) -> StreamEncoder:
        return OpenAIChatStream(ctx, stream, include_usage)

    def error(self, error: GatewayError) -> Response:
        return error.response()


class OpenAIChatStream:
    def __init__(self, ctx: RequestContext, stream: ChunkStream, include_usage: bool) -> None:
        self.ctx = ctx
        self.stream = stream
        self.include_usage = include_usage

    def chunk(self, chunk: Json) -> bytes:
        return sse(chunk)

    def keepalive(self) -> bytes:
        return KEEPALIVE

    def end(self, final: Json | None, first: Json | None) -> list[bytes]:
        stream = self.stream
        final = final or {"id": (first or {}).get("id", "chatcmpl-ttc"), "object": "chat.completion.chunk",
                          "created": int(time.time()), "model": stream.served_model, "choices": []}
        ttc = ttc_object(self.ctx, stream.strategy, stream.report)
        if self.include_usage:
            usage = {"id": final.get("id"), "object": "chat.completion.chunk", "created": final.get("created"),
                     "model": stream.served_model, "choices": [], "usage": self.ctx.account.usage(), "ttc": ttc}
            return [sse(final), sse(usage), SSE_DONE]
        final["ttc"] = ttc
        return [sse(final), SSE_DONE]

    def error(self, failure: GatewayError) -> bytes:
        return sse_error_event(failure)


OPENAI_CHAT = OpenAIChat()


def json_answer(ctx: RequestContext, answer: Answer, dialect: Dialect = OPENAI_CHAT) -> Response:
    body = dialect.body(ctx, answer)
    headers = answer_headers(ctx, answer)
    finish(ctx, 200, served_model=answer.served_model, settle=answer.settle)
    return Response(orjson.dumps(body), media_type="application/json", headers=headers)


def stream_answer(ctx: RequestContext, stream: ChunkStream, include_usage: bool, dialect: Dialect = OPENAI_CHAT) -> Response:
    headers = _router_headers(ctx, {**STREAM_HEADERS, "x-ttc-model": stream.served_model})
    encoder = dialect.encoder(ctx, stream, include_usage)
    return StreamingResponse(_frames(ctx, stream, encoder), media_type="text/event-stream", headers=headers)


async def _frames(ctx: RequestContext, stream: ChunkStream, encoder: StreamEncoder) -> AsyncIterator[bytes]:
    status, first_byte_s = "499", None  # a client that leaves mid-stream
    first: Json | None = None
    failure: GatewayError | None = None
    try:
        try:
            async for chunk in stream.chunks():
                if first_byte_s is None:
                    first_byte_s = time.perf_counter() - ctx.started
                if chunk is None:
                    yield encoder.keepalive()
                    continue
                first = first or chunk
                yield encoder.chunk(chunk)
        except Exception:  # a 200 stream ends in an error event, never a cut connection
            log.exception("stream from %s failed", stream.served_model)
            failure = internal_error()
        with anyio.CancelScope(shield=True):
            await stream.close()
        failure = failure or stream.failure
        if failure is not None:
            status = str(failure.status)
            yield encoder.error(failure)
            return
        ending = b"".join(encoder.end(stream.final, first))  # one write: each send costs a trip through the ASGI server
        status = "200"
        yield ending
    finally:
        # Runs on normal end, upstream failure and client disconnect alike; the shield keeps a
        # cancelled (disconnected) request from skipping what it owes.
        with anyio.CancelScope(shield=True):
            await stream.close()
        failure = failure or stream.failure
        finish(ctx, status, served_model=stream.served_model, settle=stream.settle, first_byte_s=first_byte_s,
               error_code=failure.code if failure is not None else None)
