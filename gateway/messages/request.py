"""A Messages request, validated, and its translation into the pipeline's chat-completion form."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

import orjson
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

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


OpaqueType = Literal[
    "thinking", "redacted_thinking", "image", "document", "search_result",
    # Anthropic's server tools, which Anthropic runs itself: a translated upstream was never offered
    # them, so what they did in earlier turns stays in the answers the model gave after them.
    "server_tool_use", "web_search_tool_result", "web_fetch_tool_result", "code_execution_tool_result",
    "bash_code_execution_tool_result", "text_editor_code_execution_tool_result", "mcp_tool_use", "mcp_tool_result",
    "container_upload",
]


class OpaqueBlock(BaseModel):
    """Blocks the upstream chat API has no place for (thinking, images, documents, server tools): dropped."""

    model_config = ConfigDict(extra="allow")
    type: OpaqueType


class ResultPart(BaseModel):
    """Any other block a tool result holds (images, documents, Claude Code's `tool_reference` from its
    tool search, ...): the chat API's tool turn holds text only, so it is dropped there."""

    model_config = ConfigDict(extra="allow")
    type: str


def _result_part_kind(part: object) -> str:
    kind = part.get("type") if isinstance(part, dict) else getattr(part, "type", None)
    return "text" if kind == "text" else "other"


ToolResultPart = Annotated[Annotated[TextBlock, Tag("text")] | Annotated[ResultPart, Tag("other")], Discriminator(_result_part_kind)]


class ToolResultBlock(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: str | list[ToolResultPart] = ""
    is_error: bool = False


Block = TextBlock | ToolUseBlock | ToolResultBlock | OpaqueBlock
BLOCK_TYPES = ("text", "tool_use", "tool_result", *get_args(OpaqueType))


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # "system": an instruction given mid-conversation (Claude Code sends these to its newer models,
    # under the `mid-conversation-system` beta); it stays at its place as a chat system message.
    role: Literal["user", "assistant", "system"]
    content: str | list[Block] = Field(min_length=1)

    @field_validator("content", mode="before")
    @classmethod
    def _block_types_known(cls, blocks: object) -> object:
        # Named before the union is tried, whose own error would only say the content is no string.
        for index, block in enumerate(blocks if isinstance(blocks, list) else []):
            kind = block.get("type") if isinstance(block, dict) else None
            if kind not in BLOCK_TYPES:
                raise ValueError(f"content[{index}] is a '{kind}' block, which this gateway does not take; "
                                 f"the block types it takes are {', '.join(BLOCK_TYPES)}")
        return blocks


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


class OutputFormat(BaseModel):
    """Structured output: the answer is JSON matching `schema` (Claude Code asks for its session titles so)."""

    model_config = ConfigDict(extra="allow")
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    format: OutputFormat | None = None  # `effort`, also here, has no chat-completions counterpart: not forwarded


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
    output_config: OutputConfig | None = None
    output_format: OutputFormat | None = None  # the structured-outputs beta's earlier spelling of output_config.format
    stream: bool = False
    ttc: TtcOptions | None = None


class CountTokensRequest(MessagesRequest):
    """What `/v1/messages/count_tokens` takes: a Messages request without `max_tokens`."""

    max_tokens: int = Field(default=1, ge=1)


def _text(content: str | list[TextBlock] | list[TextBlock | ResultPart]) -> str:
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
        if message.role == "system":
            out.append({"role": "system", "content": "".join(texts)})
            continue
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


def _response_format(request: MessagesRequest) -> dict[str, Any] | None:
    wanted = (request.output_config.format if request.output_config else None) or request.output_format
    # No `strict`: OpenAI's strict mode refuses schemas that Anthropic's structured outputs take.
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": wanted.schema_}} if wanted else None


def to_chat(request: MessagesRequest) -> ChatCompletionRequest:
    body: dict[str, Any] = {
        "model": request.model, "messages": _chat_messages(request), "max_tokens": request.max_tokens,
        "stream": request.stream, "temperature": request.temperature, "top_p": request.top_p,
        "stop": request.stop_sequences, "tool_choice": _tool_choice(request.tool_choice),
        "user": request.metadata.user_id if request.metadata else None, "response_format": _response_format(request),
        "ttc": request.ttc.model_dump(exclude_none=True) if request.ttc else None,
    }
    tools = [t for t in request.tools or [] if t.is_client_tool]
    if tools:
        body["tools"] = [function_tool(t.name, t.description, t.input_schema) for t in tools]
    return translated_chat_request(body)
