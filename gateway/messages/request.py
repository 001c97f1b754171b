"""A Messages request, validated, and its translation into the pipeline's chat-completion form."""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from gateway.schemas import ChatCompletionRequest, TtcOptions, function_tool, translated_chat_request


class TextBlock(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text"]
    text: str


class ToolUseBlock(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["tool_use"]
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict[str, Any]


class OpaqueBlock(BaseModel):
    """Blocks the upstream chat API has no place for (thinking, images, documents): dropped."""

    model_config = ConfigDict(extra="allow")
    type: Literal["thinking", "redacted_thinking", "image", "document", "search_result"]


class ToolResultBlock(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: str | list[TextBlock | OpaqueBlock] = ""
    is_error: bool = False


Block = TextBlock | ToolUseBlock | ToolResultBlock | OpaqueBlock


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["user", "assistant"]
    content: str | list[Block] = Field(min_length=1)


class Tool(BaseModel):
    model_config = ConfigDict(extra="allow")
    # None or "custom": a client tool. Other types are Anthropic's server tools (web search, code
    # execution...), which a chat-completions upstream cannot run: they are left out.
    type: str | None = None
    name: str = Field(min_length=1)
    description: str | None = None
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})

    @property
    def is_client_tool(self) -> bool:
        return self.type in (None, "custom")


class ToolChoice(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None


class Metadata(BaseModel):
    model_config = ConfigDict(extra="allow")
    user_id: str | None = None


class MessagesRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    max_tokens: int = Field(ge=1)  # required, as Anthropic requires it
    system: str | list[TextBlock] | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    metadata: Metadata | None = None
    stream: bool = False
    ttc: TtcOptions | None = None


class CountTokensRequest(MessagesRequest):
    """What `/v1/messages/count_tokens` takes: a Messages request without `max_tokens`."""

    max_tokens: int = Field(default=1, ge=1)


def _text(content: str | list[TextBlock] | list[TextBlock | OpaqueBlock]) -> str:
    return content if isinstance(content, str) else "".join(block.text for block in content if isinstance(block, TextBlock))


def _chat_messages(request: MessagesRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": _text(request.system)})
    for message in request.messages:
        if isinstance(message.content, str):
            out.append({"role": message.role, "content": message.content})
            continue
        texts = [b.text for b in message.content if isinstance(b, TextBlock)]
        tool_uses = [b for b in message.content if isinstance(b, ToolUseBlock)]
        results = [b for b in message.content if isinstance(b, ToolResultBlock)]
        # Tool results answer the assistant's calls, so they come first, each as its own tool turn.
        for result in results:
            text = _text(result.content)
            out.append({"role": "tool", "tool_call_id": result.tool_use_id, "content": f"Error: {text}" if result.is_error else text})
        if message.role == "assistant":
            turn: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
            if tool_uses:
                turn["tool_calls"] = [{"id": b.id, "type": "function",
                                       "function": {"name": b.name, "arguments": orjson.dumps(b.input).decode()}} for b in tool_uses]
            out.append(turn)
        elif texts or not results:
            out.append({"role": "user", "content": "".join(texts)})
    return out


def _tool_choice(choice: ToolChoice | None) -> str | dict[str, Any] | None:
    if choice is None:
        return None
    if choice.type == "tool":
        return {"type": "function", "function": {"name": choice.name or ""}}
    return {"auto": "auto", "any": "required", "none": "none"}[choice.type]


def to_chat(request: MessagesRequest) -> ChatCompletionRequest:
    body: dict[str, Any] = {
        "model": request.model, "messages": _chat_messages(request), "max_tokens": request.max_tokens,
        "stream": request.stream, "temperature": request.temperature, "top_p": request.top_p,
        "stop": request.stop_sequences, "tool_choice": _tool_choice(request.tool_choice),
        "user": request.metadata.user_id if request.metadata else None,
        "ttc": request.ttc.model_dump(exclude_none=True) if request.ttc else None,
    }
    tools = [t for t in request.tools or [] if t.is_client_tool]
    if tools:
        body["tools"] = [function_tool(t.name, t.description, t.input_schema) for t in tools]
    return translated_chat_request(body)
