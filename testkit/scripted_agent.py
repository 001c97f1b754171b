"""A SCRIPTED upstream, OpenAI-compatible chat and Anthropic Messages, that plays a coding agent,
for driving real agent CLIs (Claude Code, Codex) through the gateway where no capable model is at
hand. It is a simulation: its answers are fixed by a script, not generated.

The script, on `POST /v1/chat/completions` and on `POST /v1/messages` alike:

- when tool results follow the last user message that asks for a task: a final text answer;
- when the request declares a shell-like tool (one whose parameters have a `command` or `cmd`
  property) and a user message asks to "create FILE containing TEXT": a line of text, then two calls
  of that tool in one turn, one writing TEXT into FILE and one running `pwd`, their arguments shaped
  by the tool's own declared schema (a `command` that is an array gets `["bash", "-lc", script]`, a
  string gets the script);
- otherwise: a short text answer (title generation, quota probes and other side calls), or, when
  structured output is asked for, a JSON object with the schema's properties filled in.

Streams follow each API's shapes (OpenAI's chunks, ending with a usage chunk when asked;
Anthropic's events). `GET /_requests` returns a summary of each request seen (API, model, stream,
tool names, tool results received, calls made).

Run: ``python -m testkit.scripted_agent --port 9200``
"""

from __future__ import annotations

import argparse
import re
import shlex
import time
from typing import Any

import orjson

from testkit.asgi import read_body, run_lifespan

Json = dict[str, Any]
TASK = re.compile(r"create (?P<file>[\w./-]*\w) containing (?P<text>\w+)", re.IGNORECASE)
FINAL_TEXT = "Done: the file is written. (scripted upstream)"
SIDE_TEXT = "Scripted upstream reply."
PREAMBLE_TEXT = "I will write the file, and show where. (scripted upstream)"


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _shell_tool(tools: list[Json]) -> tuple[str, str, Json] | None:
    """The first declared tool that runs a command: (name, argument name, its parameters' properties)."""
    for tool in tools:
        function = tool.get("function") or {}
        properties = (function.get("parameters") or {}).get("properties") or {}
        for argument in ("command", "cmd"):
            if argument in properties:
                return str(function.get("name")), argument, properties
    return None


def plan(body: Json) -> tuple[str, list[Json]]:
    """(text, tool calls) the script answers this chat request with."""
    messages = body.get("messages") or []
    task, asked_at = None, -1
    for position in range(len(messages) - 1, -1, -1):
        if messages[position].get("role") == "user":
            task = TASK.search(_text(messages[position].get("content")))
            if task:
                asked_at = position
                break
    # Tool results after the ask: the calls were run (a CLI may add reminders after them).
    if any(message.get("role") == "tool" for message in messages[asked_at + 1:]):
        return FINAL_TEXT, []
    tool = _shell_tool(body.get("tools") or [])
    if tool is None or task is None:
        return SIDE_TEXT, []
    name, argument, properties = tool
    # Two calls in one turn, after a line of text, as agents often answer: the CLI must run both and
    # send both results back in its next request.
    scripts = [(f"Write {task['file']}", f"printf %s {shlex.quote(task['text'])} > {shlex.quote(task['file'])}"),
               ("Show the working directory", "pwd")]
    calls = []
    for position, (description, script) in enumerate(scripts):
        value: object = ["bash", "-lc", script] if properties[argument].get("type") == "array" else script
        arguments: Json = {argument: value}
        if "description" in properties:  # Claude Code's Bash asks for one
            arguments["description"] = description
        calls.append({"id": f"call_scripted_{len(messages)}_{position}", "type": "function",
                      "function": {"name": name, "arguments": orjson.dumps(arguments).decode()}})
    return PREAMBLE_TEXT, calls


def requested_schema(body: Json, native: bool) -> Json | None:
    """The JSON schema a structured-output request wants its answer to match, if any."""
    if native:
        wanted = (body.get("output_config") or {}).get("format") or body.get("output_format") or {}
        return wanted.get("schema") if wanted.get("type") == "json_schema" else None
    wanted = body.get("response_format") or {}
    return (wanted.get("json_schema") or {}).get("schema") if wanted.get("type") == "json_schema" else None


def json_answer(schema: Json) -> str:
    """An object with every declared property filled by its type (strings say where they come from)."""
    fills: dict[str, object] = {"string": "Scripted upstream", "number": 0, "integer": 0, "boolean": False, "array": [], "object": {}}
    properties = schema.get("properties") or {}
    return orjson.dumps({name: fills.get(str(spec.get("type")), None) for name, spec in properties.items()}).decode()


def _prompt_tokens(body: Json) -> int:
    words = sum(len(_text(m.get("content")).split()) + 3 for m in body.get("messages") or [])
    return words + sum(len(orjson.dumps(t)) // 4 for t in body.get("tools") or [])


def chat_view(body: Json) -> Json:
    """An Anthropic Messages request as the script reads chat requests: tool results as tool turns."""
    system = body.get("system")
    messages: list[Json] = [{"role": "system", "content": system}] if system else []
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            messages.append({"role": message.get("role"), "content": content})
            continue
        blocks = [block for block in content or [] if isinstance(block, dict)]
        messages += [{"role": "tool", "tool_call_id": b.get("tool_use_id")} for b in blocks if b.get("type") == "tool_result"]
        texts = [b for b in blocks if b.get("type") == "text"]
        if texts:
            messages.append({"role": message.get("role"), "content": texts})
    tools = [{"type": "function", "function": {"name": t.get("name"), "parameters": t.get("input_schema") or {}}}
             for t in body.get("tools") or [] if isinstance(t, dict) and t.get("name")]
    return {"messages": messages, "tools": tools}


class ScriptedAgent:
    """Serves the script on `POST /v1/chat/completions` (OpenAI's chat form) and on `POST /v1/messages`
    (Anthropic's Messages API, for a gateway model served natively)."""

    def __init__(self) -> None:
        self.seen: list[Json] = []

    async def __call__(self, scope: Json, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await run_lifespan(receive, send)
            return
        if scope["method"] == "GET" and scope["path"] == "/_requests":
            await self._json(send, 200, self.seen)
            return
        raw = await read_body(receive)
        native = scope["path"].endswith("/v1/messages")
        if not native and not scope["path"].endswith("/chat/completions"):
            await self._json(send, 404, {"error": {"message": "scripted upstream serves chat completions and messages only", "type": "invalid_request_error"}})
            return
        body = orjson.loads(raw)
        view = chat_view(body) if native else body
        text, calls = plan(view)
        schema = requested_schema(body, native)
        if schema is not None and not calls:
            text = json_answer(schema)
        messages = view.get("messages") or []
        self.seen.append({"api": "messages" if native else "chat", "model": body.get("model"), "stream": bool(body.get("stream")),
                          "structured": schema is not None,
                          "messages": len(messages), "bytes": len(raw),
                          "tools": [str((t.get("function") or {}).get("name")) for t in view.get("tools") or []],
                          "tool_results": [m.get("tool_call_id") for m in messages if m.get("role") == "tool"],
                          "calls": [{"id": call["id"], **call["function"]} for call in calls]})
        prompt = _prompt_tokens(view)
        completion = len(text.split()) + sum(len(call["function"]["arguments"]) // 4 for call in calls) + 1
        if native:
            await self._messages(send, body, text, calls, prompt, completion)
        else:
            await self._chat(send, body, text, calls, prompt, completion)

    async def _chat(self, send: Any, body: Json, text: str, calls: list[Json], prompt: int, completion: int) -> None:
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        ident, created, model = f"chatcmpl-scripted-{len(self.seen)}", int(time.time()), str(body.get("model"))
        finish = "tool_calls" if calls else "stop"
        if not body.get("stream"):
            message: Json = {"role": "assistant", "content": text or None}
            if calls:
                message["tool_calls"] = calls
            await self._json(send, 200, {"id": ident, "object": "chat.completion", "created": created, "model": model,
                                         "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        base = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}

        async def chunk(payload: Json) -> None:
            await send({"type": "http.response.body", "body": b"data: " + orjson.dumps({**base, **payload}) + b"\n\n", "more_body": True})

        def delta(fields: Json, finish_reason: str | None = None) -> Json:
            return {"choices": [{"index": 0, "delta": fields, "finish_reason": finish_reason}]}

        await chunk(delta({"role": "assistant", "content": ""}))
        for position, word in enumerate(text.split(" ") if text else []):
            await chunk(delta({"content": word if position == 0 else " " + word}))
        for index, call in enumerate(calls):  # id and name first, then the arguments in two pieces, as OpenAI streams them
            arguments = call["function"]["arguments"]
            await chunk(delta({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                               "function": {"name": call["function"]["name"], "arguments": ""}}]}))
            half = len(arguments) // 2
            for piece in (arguments[:half], arguments[half:]):
                await chunk(delta({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
        await chunk(delta({}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            await chunk({"choices": [], "usage": usage})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

    async def _messages(self, send: Any, body: Json, text: str, calls: list[Json], prompt: int, completion: int) -> None:
        content: list[Json] = [{"type": "text", "text": text}] if text else []
        content += [{"type": "tool_use", "id": call["id"], "name": call["function"]["name"],
                     "input": orjson.loads(call["function"]["arguments"])} for call in calls]
        message = {"id": f"msg_scripted_{len(self.seen)}", "type": "message", "role": "assistant", "model": str(body.get("model")),
                   "content": content, "stop_reason": "tool_use" if calls else "end_turn", "stop_sequence": None,
                   "usage": {"input_tokens": prompt, "output_tokens": completion}}
        if not body.get("stream"):
            await self._json(send, 200, message)
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})

        async def event(name: str, payload: Json) -> None:
            data = b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **payload}) + b"\n\n"
            await send({"type": "http.response.body", "body": data, "more_body": True})

        await event("message_start", {"message": {**message, "content": [], "stop_reason": None,
                                                  "usage": {"input_tokens": prompt, "output_tokens": 1}}})
        for index, block in enumerate(content):
            if block["type"] == "text":
                await event("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}})
                await event("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": block["text"]}})
            else:
                arguments = orjson.dumps(block["input"]).decode()
                await event("content_block_start", {"index": index, "content_block": {**block, "input": {}}})
                half = len(arguments) // 2
                for piece in (arguments[:half], arguments[half:]):
                    await event("content_block_delta", {"index": index, "delta": {"type": "input_json_delta", "partial_json": piece}})
            await event("content_block_stop", {"index": index})
        await event("message_delta", {"delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                                      "usage": {"output_tokens": completion}})
        await event("message_stop", {})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    async def _json(send: Any, status: int, payload: object) -> None:
        data = orjson.dumps(payload)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200)
    args = parser.parse_args()
    uvicorn.run(ScriptedAgent(), host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
