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


def _tool_calls(calls: object) -> list[ToolCall]:
    found = []
    for position, call in enumerate(calls if isinstance(calls, list) else []):
        function = call.get("function") or {}
        index = call.get("index")
        found.append(ToolCall(index if isinstance(index, int) else position, str(call.get("id") or ""),
                              str(function.get("name") or ""), str(function.get("arguments") or "")))
    return found


def answer_parts(body: Json) -> Parts:
    """The first choice of a chat completion."""
    choice = (body.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    return Parts(str(message.get("content") or ""), _tool_calls(message.get("tool_calls")), choice.get("finish_reason"))


def chunk_parts(chunk: Json) -> Parts:
    """What one stream chunk adds, over all its choices (the gateway streams one)."""
    text, calls, finish = [], [], None
    for choice in chunk.get("choices") or []:
        finish = choice.get("finish_reason") or finish
        delta = choice.get("delta") or {}
        text.append(str(delta.get("content") or ""))
        calls += _tool_calls(delta.get("tool_calls"))
    return Parts("".join(text), calls, finish)
