"""The Anthropic Messages API as `FakeUpstream` speaks it on `POST /v1/messages`: a forced provider
for the gateway's native path, since no Anthropic model is reachable from the tests.

Every answer has a thinking block (with a signature, which a client must send back unchanged) and
then text of `max_tokens` words; usage reports the words of the request as input, 2 of them as read
from the prompt cache. The model ``overloaded`` answers 529, Anthropic's overloaded status."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

Send = Callable[[dict[str, Any]], Awaitable[None]]
SIGNATURE = "sig-fake-0001"
THOUGHT = "Let me think."
CACHED = 2


def _words(value: object) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_words(v) for v in value)
    if isinstance(value, dict):
        return sum(_words(v) for k, v in value.items() if k in ("text", "content", "thinking"))
    return 0


def _usage(body: dict[str, Any], output: int) -> dict[str, int]:
    total = _words(body.get("system")) + _words(body.get("messages"))
    return {"input_tokens": max(total - CACHED, 0), "cache_read_input_tokens": CACHED, "cache_creation_input_tokens": 0,
            "output_tokens": output}


async def answer_messages(send: Send, body: dict[str, Any], respond_json: Callable[[int, Any], Awaitable[None]]) -> None:
    model = str(body.get("model"))
    if model == "overloaded":
        await respond_json(529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
        return
    words = int(body.get("max_tokens") or 4)
    text = " ".join(["tok"] * words)
    output = words + len(THOUGHT.split())
    message_id = "msg_fake_1"
    if not body.get("stream"):
        await respond_json(200, {
            "id": message_id, "type": "message", "role": "assistant", "model": model, "stop_reason": "max_tokens",
            "stop_sequence": None, "usage": _usage(body, output),
            "content": [{"type": "thinking", "thinking": THOUGHT, "signature": SIGNATURE}, {"type": "text", "text": text}]})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})

    async def event(payload: dict[str, Any]) -> None:
        frame = b"event: " + str(payload["type"]).encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
        await send({"type": "http.response.body", "body": frame, "more_body": True})

    start_usage = {**_usage(body, 1)}
    await event({"type": "message_start", "message": {"id": message_id, "type": "message", "role": "assistant", "model": model,
                                                       "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}})
    await event({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
    await event({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": THOUGHT}})
    await event({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": SIGNATURE}})
    await event({"type": "content_block_stop", "index": 0})
    await event({"type": "ping"})
    await event({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}})
    for _ in range(words):
        await event({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "tok "}})
    await event({"type": "content_block_stop", "index": 1})
    await event({"type": "message_delta", "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
                 "usage": {"output_tokens": output}})
    await event({"type": "message_stop"})
    await send({"type": "http.response.body", "body": b""})
