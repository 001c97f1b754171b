"""Answers, streams and errors in the Anthropic Messages shapes."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from gateway.errors import GatewayError
from gateway.messages.errors import error_body
from gateway.messages.native import NativeAnthropicStream, native_body
from gateway.pipeline.answer_parts import answer_parts, chunk_parts
from gateway.pipeline.context import RequestContext
from gateway.pipeline.respond import Answer, ChunkStream, StreamEncoder, ttc_object
from gateway.upstream import Json

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                "content_filter": "refusal"}


def _event(name: str, payload: Json) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def _tool_input(arguments: object) -> dict[str, Any]:
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, (str, bytes)) and arguments else {}
    except orjson.JSONDecodeError:
        return {"_raw": arguments}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def _usage(ctx: RequestContext) -> Json:
    usage = ctx.account.usage()
    return {"input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"]}


class AnthropicMessages:
    def body(self, ctx: RequestContext, answer: Answer) -> Json:
        if answer.native:
            return native_body(answer.body, answer.served_model, ttc_object(ctx, answer.strategy, answer.report))
        parts = answer_parts(answer.body)
        content: list[Json] = [{"type": "text", "text": parts.text}] if parts.text else []
        content += [{"type": "tool_use", "id": call.id, "name": call.name, "input": _tool_input(call.arguments)}
                    for call in parts.tool_calls]
        return {"id": f"msg_{ctx.request_id}", "type": "message", "role": "assistant", "model": answer.served_model,
                "content": content, "stop_reason": STOP_REASONS.get(str(parts.finish_reason), "end_turn"),
                "stop_sequence": None, "usage": _usage(ctx), "ttc": ttc_object(ctx, answer.strategy, answer.report)}

    def encoder(self, ctx: RequestContext, stream: ChunkStream, include_usage: bool) -> StreamEncoder:
        if stream.native:
            return NativeAnthropicStream(ctx, stream)
        return AnthropicStream(ctx, stream)

    def error(self, error: GatewayError) -> Response:
        return Response(orjson.dumps(error_body(error)), status_code=error.status, media_type="application/json",
                        headers=error.headers)


class AnthropicStream:
    """OpenAI chunks in, Anthropic events out: one text block, then one tool_use block per call."""

    def __init__(self, ctx: RequestContext, stream: ChunkStream) -> None:
        self.ctx = ctx
        self.stream = stream
        self.started = False
        self.block: int = -1
        self.block_kind: str | None = None
        self.tool_index: dict[int, int] = {}  # the upstream's tool-call index -> our block index
        self.finish_reason: str | None = None

    def _start(self) -> list[bytes]:
        if self.started:
            return []
        self.started = True
        message = {"id": f"msg_{self.ctx.request_id}", "type": "message", "role": "assistant",
                   "model": self.stream.served_model, "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": 0, "output_tokens": 0}}
        return [_event("message_start", {"type": "message_start", "message": message})]

    def _open(self, kind: str, block: Json) -> list[bytes]:
        frames = self._close()
        self.block += 1
        self.block_kind = kind
        frames.append(_event("content_block_start", {"type": "content_block_start", "index": self.block, "content_block": block}))
        return frames

    def _close(self) -> list[bytes]:
        if self.block_kind is None:
            return []
        self.block_kind = None
        return [_event("content_block_stop", {"type": "content_block_stop", "index": self.block})]

    def chunk(self, chunk: Json) -> bytes:
        frames = self._start()
        parts = chunk_parts(chunk)
        self.finish_reason = parts.finish_reason or self.finish_reason
        if parts.text:
            if self.block_kind != "text":
                frames += self._open("text", {"type": "text", "text": ""})
            frames.append(_event("content_block_delta", {"type": "content_block_delta", "index": self.block,
                                                         "delta": {"type": "text_delta", "text": parts.text}}))
        for call in parts.tool_calls:
            if call.index not in self.tool_index:
                frames += self._open("tool_use", {"type": "tool_use", "id": call.id, "name": call.name, "input": {}})
                self.tool_index[call.index] = self.block
            if call.arguments:
                frames.append(_event("content_block_delta", {
                    "type": "content_block_delta", "index": self.tool_index[call.index],
                    "delta": {"type": "input_json_delta", "partial_json": call.arguments}}))
        return b"".join(frames)

    def keepalive(self) -> bytes:
        return b"".join(self._start()) + _event("ping", {"type": "ping"})

    def end(self, final: Json | None, first: Json | None) -> list[bytes]:
        frames = [self.chunk(final)] if final else []
        frames += self._start() + self._close()
        stop = STOP_REASONS.get(str(self.finish_reason), "end_turn")
        frames.append(_event("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                               "usage": _usage(self.ctx),
                                               "ttc": ttc_object(self.ctx, self.stream.strategy, self.stream.report)}))
        frames.append(_event("message_stop", {"type": "message_stop"}))
        return frames

    def error(self, failure: GatewayError) -> bytes:
        return b"".join(self._start()) + _event("error", error_body(failure))


MESSAGES = AnthropicMessages()
