"""What a chat completion or chunk says, read once for every dialect: text, and tool calls."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.upstream import Json


@dataclass(frozen=True)
class ToolCall:
    """A tool call, or (in a stream) a piece of one: `index` ties the pieces together."""

    index: int
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Parts:
    text: str
    tool_calls: list[ToolCall]
    finish_reason: str | None


def tool_calls_of(calls: object) -> list[ToolCall]:
    found = []
    for position, call in enumerate(calls if isinstance(calls, list) else []):
        if not isinstance(call, dict):
            continue
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        index = call.get("index")
        found.append(ToolCall(index if isinstance(index, int) else position, str(call.get("id") or ""),
                              str(function.get("name") or ""), str(function.get("arguments") or "")))
    return found


def answer_parts(body: Json) -> Parts:
    """The first choice of a chat completion."""
    choice = (body.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    return Parts(str(message.get("content") or ""), tool_calls_of(message.get("tool_calls")), choice.get("finish_reason"))


def chunk_parts(chunk: Json) -> Parts:
    """What one stream chunk adds, over all its choices (the gateway streams one)."""
    choices = chunk.get("choices") or []
    if len(choices) == 1:  # every chunk of every stream comes this way: kept lean
        choice = choices[0]
        delta = choice.get("delta") or {}
        calls_in = delta.get("tool_calls")
        return Parts(str(delta.get("content") or ""), tool_calls_of(calls_in) if calls_in else [], choice.get("finish_reason"))
    text, calls, finish = [], [], None
    for choice in chunk.get("choices") or []:
        finish = choice.get("finish_reason") or finish
        delta = choice.get("delta") or {}
        text.append(str(delta.get("content") or ""))
        calls += tool_calls_of(delta.get("tool_calls"))
    return Parts("".join(text), calls, finish)


def chat_tool_calls(calls: list[ToolCall]) -> list[Json] | None:
    """Tool calls in the chat form, the pieces of a streamed call (one index) joined; None for none."""
    joined: dict[int, Json] = {}
    for call in calls:
        found = joined.get(call.index)
        if found is None:
            joined[call.index] = {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            continue
        found["id"] = found["id"] or call.id
        function = found["function"]
        function["name"] = function["name"] or call.name
        function["arguments"] += call.arguments
    return [joined[index] for index in sorted(joined)] or None
