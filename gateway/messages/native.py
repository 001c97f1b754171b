"""`/v1/messages` served by an upstream that speaks the Messages API itself (an Anthropic model):
the client's body goes through as sent, with only `model` changed (and the gateway's `ttc` field
removed), and the answer or its events come back as the upstream sent them, with the gateway's
model name and `ttc` object added. Thinking blocks, signatures, cache_control and betas survive."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import orjson

from gateway.config import ModelConfig
from gateway.errors import GatewayError
from gateway.messages.errors import error_body
from gateway.pipeline.context import RequestContext
from gateway.pipeline.respond import ChunkStream, ttc_object
from gateway.upstream import Json
from gateway.upstream.anthropic_native import AnthropicMessagesClient, native_usage, speaks_messages

INPUT_KEYS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
DELTA_TEXT = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json"}


def _sse(name: str, payload: Json) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class AnthropicNative:
    """One request's native route: the body as the client sent it (already validated as a MessagesRequest)."""

    def __init__(self, client: AnthropicMessagesClient, sent: dict[str, object], headers: Mapping[str, str]) -> None:
        self.client = client
        self.payload: Json = {key: value for key, value in sent.items() if key != "ttc"}
        self.headers = headers

    def serves(self, model: ModelConfig) -> bool:
        return speaks_messages(model)

    async def complete(self, model: ModelConfig) -> Json:
        return await self.client.complete(model, self.payload, self.headers)

    def stream(self, model: ModelConfig) -> AsyncIterator[Json]:
        return self.client.stream(model, self.payload, self.headers)

    def usage(self, payload: Json) -> tuple[int | None, int | None]:
        source = payload.get("message") if payload.get("type") == "message_start" else payload
        usage = source.get("usage") if isinstance(source, dict) else None
        counts = native_usage(source) if isinstance(source, dict) else None
        if not isinstance(usage, dict) or counts is None:
            return None, None
        return (counts[0] if any(key in usage for key in INPUT_KEYS) else None,
                counts[1] if "output_tokens" in usage else None)

    def text(self, payload: Json) -> str:
        if payload.get("type") == "message":
            parts = []
            for block in payload.get("content") or []:
                if isinstance(block, dict):
                    value = block.get("text") or block.get("thinking") or (orjson.dumps(block["input"]).decode() if "input" in block else "")
                    parts.append(str(value))
            return "".join(parts)
        delta = payload.get("delta") if payload.get("type") == "content_block_delta" else None
        if isinstance(delta, dict):
            return str(delta.get(DELTA_TEXT.get(str(delta.get("type")), "text")) or "")
        return ""

    def closing(self, event: Json) -> bool:
        return event.get("type") in ("message_delta", "message_stop")


def native_body(body: Json, served_model: str, ttc: Json) -> Json:
    body["model"] = served_model
    body["ttc"] = ttc
    return body


class NativeAnthropicStream:
    """The upstream's events relayed; `message_delta` (held back, with the usage) gains `ttc` at the end."""

    def __init__(self, ctx: RequestContext, stream: ChunkStream) -> None:
        self.ctx = ctx
        self.stream = stream

    def chunk(self, chunk: Json) -> bytes:
        if chunk.get("type") == "message_start" and isinstance(chunk.get("message"), dict):
            chunk["message"]["model"] = self.stream.served_model
        return _sse(str(chunk.get("type")), chunk)

    def keepalive(self) -> bytes:
        return _sse("ping", {"type": "ping"})

    def end(self, final: Json | None, first: Json | None) -> list[bytes]:
        usage = self.ctx.account.usage()
        delta = final or {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                          "usage": {"output_tokens": usage["completion_tokens"]}}
        delta["ttc"] = ttc_object(self.ctx, None, self.stream.report)
        return [_sse("message_delta", delta), _sse("message_stop", {"type": "message_stop"})]

    def error(self, failure: GatewayError) -> bytes:
        return _sse("error", error_body(failure))
