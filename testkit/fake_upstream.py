"""A minimal, fast OpenAI-compatible upstream on 127.0.0.1, for benchmarks and fault injection.

It is a raw ASGI app (no framework) so that it costs as little CPU as possible per request.
Behaviour is chosen by the requested model name, which keeps it stateless to drive:

- any name: answers; completion tokens = the requested max_tokens (exact, predictable costs)
- ``error-500`` / ``error-503`` / ``error-429`` / ``error-400``: fails with that status
- ``flaky-K``: fails with 503 for the first K calls, then answers
- ``slow-MS``: waits MS milliseconds before answering (timeouts)
- ``no-usage``: streams without a usage chunk
- ``drip-MS``: streams one token every MS milliseconds (client-disconnect tests)
- ``inflate``: reports three times the prompt tokens it counted (tokenizer-mismatch tests)
- ``garbled``: answers 200 with a JSON list instead of a completion; streamed, sends a chunk that is a bare number
- ``bad-usage``: reports negative completion tokens
- ``tool``: answers with a tool call when tools are sent
- ``filtered``: answers, ending with finish_reason ``content_filter``
- ``POST /v1/messages``: Anthropic's Messages API (testkit/fake_anthropic.py), for the native path

Prompt tokens are the number of whitespace-separated words in all messages, plus 3 per message.
``GET /_requests`` returns the bodies received so far (tests assert on passthrough), and
``GET /_headers`` the `anthropic-*` headers of each Messages request.

Run: ``python -m testkit.fake_upstream --port 9100 [--delay-ms 2]``
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import defaultdict
from typing import Any

import orjson

from testkit.asgi import read_body, run_lifespan, send_json
from testkit.fake_anthropic import answer_messages

Scope = dict[str, Any]


class FakeUpstream:
    def __init__(self, delay_ms: float = 0.0, record: bool = True) -> None:
        self.delay_s = delay_ms / 1000
        self.record = record
        self.requests: list[dict[str, Any]] = []
        self.calls: dict[str, int] = defaultdict(int)
        self.anthropic_headers: list[dict[str, str]] = []

    @staticmethod
    def prompt_tokens(body: dict[str, Any]) -> int:
        total = 0
        for message in body.get("messages") or []:
            content = message.get("content")
            text = content if isinstance(content, str) else " ".join(p.get("text", "") for p in content or [] if isinstance(p, dict))
            total += len(text.split()) + 3
        return total

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await run_lifespan(receive, send)
            return
        path = scope["path"]
        if scope["method"] == "GET" and path == "/_requests":
            await self._json(send, 200, self.requests)
            return
        if scope["method"] == "GET" and path == "/_headers":
            await self._json(send, 200, self.anthropic_headers)
            return
        raw = await read_body(receive)
        body = orjson.loads(raw) if raw else {}
        if self.record:
            self.requests.append(body)
        if path.endswith("/embeddings"):
            await self._embeddings(send, body)
        elif path.endswith("/chat/completions"):
            await self._chat(send, body)
        elif path.endswith("/v1/messages"):
            self.anthropic_headers.append({k.decode(): v.decode() for k, v in scope["headers"] if k.startswith((b"anthropic-", b"x-api-key"))})
            await answer_messages(send, body, lambda status, payload: self._json(send, status, payload))
        else:
            await self._json(send, 404, {"error": {"message": "not found", "type": "invalid_request_error"}})

    async def _json(self, send: Any, status: int, payload: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        await send_json(send, status, payload, headers)

    async def _fault(self, send: Any, model: str) -> bool:
        self.calls[model] += 1
        status = 0
        if model.startswith("error-"):
            status = int(model.split("-", 1)[1])
        elif model.startswith("flaky-") and self.calls[model] <= int(model.split("-", 1)[1]):
            status = 503
        if model.startswith("slow-"):
            await asyncio.sleep(int(model.split("-", 1)[1]) / 1000)
        if status:
            headers = [(b"retry-after", b"0")] if status == 429 else []
            await self._json(send, status, {"error": {"message": f"injected {status}", "type": "fake", "code": None}}, headers)
            return True
        return False

    async def _chat(self, send: Any, body: dict[str, Any]) -> None:
        model = str(body.get("model", "fake"))
        if await self._fault(send, model):
            return
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)
        n = int(body.get("n") or 1)
        prompt = self.prompt_tokens(body) * (3 if model == "inflate" else 1)
        drip_s = int(model.split("-", 1)[1]) / 1000 if model.startswith("drip-") else 0.0
        created = int(time.time())
        ident = f"chatcmpl-fake-{created}-{len(self.requests)}"
        tool_call = None
        if model == "tool" and body.get("tools"):
            name = body["tools"][0]["function"]["name"]
            tool_call = {"id": "call_1", "type": "function", "function": {"name": name, "arguments": "{\"x\": 1}"}}
        content = " ".join(["tok"] * max_tokens)
        stop = "content_filter" if model == "filtered" else "length"
        if (body.get("response_format") or {}).get("type") in ("json_object", "json_schema"):
            content = orjson.dumps({"answer": "tok"}).decode()
        if model == "garbled" and not body.get("stream"):
            await self._json(send, 200, [1, 2])  # a 200 that is no chat completion
            return
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": None if tool_call else content}
            if tool_call:
                message["tool_calls"] = [tool_call]
            choices = [{"index": i, "message": message, "finish_reason": "tool_calls" if tool_call else stop} for i in range(n)]
            await self._json(send, 200, {
                "id": ident, "object": "chat.completion", "created": created, "model": model, "choices": choices,
                "usage": ({"prompt_tokens": prompt, "completion_tokens": -10**7} if model == "bad-usage" else
                          {"prompt_tokens": prompt, "completion_tokens": n * max_tokens, "total_tokens": prompt + n * max_tokens}),
            })
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        base = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}

        def event(payload: dict[str, Any]) -> dict[str, Any]:
            return {"type": "http.response.body", "body": b"data: " + orjson.dumps({**base, **payload}) + b"\n\n", "more_body": True}

        await send(event({"choices": [{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None} for i in range(n)]}))
        if tool_call:  # the call's id and name first, then its arguments in pieces, as OpenAI streams them
            function = tool_call["function"]
            await send(event({"choices": [{"index": 0, "finish_reason": None, "delta": {"tool_calls": [
                {"index": 0, "id": tool_call["id"], "type": "function", "function": {"name": function["name"], "arguments": ""}}]}}]}))
            for piece in (function["arguments"][:3], function["arguments"][3:]):
                await send(event({"choices": [{"index": 0, "finish_reason": None, "delta": {"tool_calls": [
                    {"index": 0, "function": {"arguments": piece}}]}}]}))
            await send(event({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}))
            if (body.get("stream_options") or {}).get("include_usage"):
                await send(event({"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": 5, "total_tokens": prompt + 5}}))
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
            return
        for position in range(max_tokens):
            piece = "tok" if position == 0 else " tok"
            if drip_s:
                await asyncio.sleep(drip_s)
            await send(event({"choices": [{"index": i, "delta": {"content": piece}, "finish_reason": None} for i in range(n)]}))
        if model == "garbled":  # a chunk that is no chunk, mid-stream
            await send({"type": "http.response.body", "body": b"data: 5\n\n", "more_body": True})
        await send(event({"choices": [{"index": i, "delta": {}, "finish_reason": stop} for i in range(n)]}))
        if model != "no-usage" and (body.get("stream_options") or {}).get("include_usage"):
            await send(event({"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": n * max_tokens, "total_tokens": prompt + n * max_tokens}}))
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

    async def _embeddings(self, send: Any, body: dict[str, Any]) -> None:
        model = str(body.get("model", "fake"))
        if await self._fault(send, model):
            return
        items = body.get("input")
        items = items if isinstance(items, list) else [items]
        data = [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(len(items))]
        tokens = sum(len(str(x).split()) for x in items)
        await self._json(send, 200, {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--no-record", action="store_true", help="do not keep request bodies (long benchmarks)")
    args = parser.parse_args()
    uvicorn.run(FakeUpstream(args.delay_ms, record=not args.no_record), host=args.host, port=args.port, log_level="warning",
                access_log=False, loop="auto", http="auto")


if __name__ == "__main__":
    main()
