"""A Responses request, validated, and its translation into the pipeline's chat-completion form."""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.errors import invalid_request
from gateway.schemas import ChatCompletionRequest, TtcOptions, function_tool, translated_chat_request


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["input_text", "output_text", "text", "input_image", "input_file", "refusal"]
    text: str | None = None


class MessageItem(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart]


class FunctionCallItem(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str


class FunctionCallOutputItem(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    # A list when the tool returned content parts (Codex's view_image returns an input_image): the
    # chat API's tool turn holds text only, so only the text parts reach the upstream.
    output: str | list[ContentPart]


class CustomToolCallItem(BaseModel):
    """A call of a freeform tool (Codex's apply_patch, on models that take it so): replayed to a chat
    upstream as a function call whose one argument, `input`, is the text the model wrote."""

    model_config = ConfigDict(extra="allow")
    type: Literal["custom_tool_call"]
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: str


class CustomToolCallOutputItem(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["custom_tool_call_output"]
    call_id: str = Field(min_length=1)
    output: str | list[ContentPart]


class ReasoningItem(BaseModel):
    """Reasoning a previous turn carried: the chat API upstream has no place for it, so it is dropped."""

    model_config = ConfigDict(extra="allow")
    type: Literal["reasoning"]


InputItem = FunctionCallItem | FunctionCallOutputItem | CustomToolCallItem | CustomToolCallOutputItem | ReasoningItem | MessageItem
INPUT_ITEM_TYPES = ("message", "function_call", "function_call_output", "custom_tool_call", "custom_tool_call_output", "reasoning")


class FunctionTool(BaseModel):
    model_config = ConfigDict(extra="allow")
    # "function" is a client tool; the others (web_search, file_search, local_shell, ...) are tools the
    # OpenAI platform runs itself, which a chat-completions upstream cannot: they are left out.
    type: str
    name: str = ""
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionChoice(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["function"]
    name: str = Field(min_length=1)


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    format: TextFormat | None = None


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: str | list[InputItem] = Field(min_length=1)
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    tools: list[FunctionTool] | None = None
    tool_choice: Literal["auto", "none", "required"] | FunctionChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextOptions | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    stream: bool = False
    store: bool | None = None
    previous_response_id: str | None = None
    ttc: TtcOptions | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _item_types_known(cls, items: object) -> object:
        # Named before the union is tried, whose own error would only say the input is no string.
        for index, item in enumerate(items if isinstance(items, list) else []):
            kind = item.get("type", "message") if isinstance(item, dict) else None
            if kind not in INPUT_ITEM_TYPES:
                raise ValueError(f"input[{index}] is a '{kind}' item, which this gateway does not take; "
                                 f"the item types it takes are {', '.join(INPUT_ITEM_TYPES)}")
        return items


def _part_text(content: str | list[ContentPart]) -> str:
    return content if isinstance(content, str) else "".join(part.text or "" for part in content)


def _chat_messages(request: ResponsesRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if isinstance(request.input, str):
        out.append({"role": "user", "content": request.input})
        return out
    for item in request.input:
        if isinstance(item, MessageItem):
            out.append({"role": item.role, "content": _part_text(item.content)})
        elif isinstance(item, FunctionCallItem | CustomToolCallItem):
            arguments = item.arguments if isinstance(item, FunctionCallItem) else orjson.dumps({"input": item.input}).decode()
            call = {"id": item.call_id, "type": "function", "function": {"name": item.name, "arguments": arguments}}
            # Calls made in one turn go on one assistant message, with any text said before them in
            # that turn (Codex replays such a turn as a message item, then its function_call items).
            if out and out[-1]["role"] == "assistant":
                out[-1].setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif isinstance(item, FunctionCallOutputItem | CustomToolCallOutputItem):
            out.append({"role": "tool", "tool_call_id": item.call_id, "content": _part_text(item.output)})
    return out


def _response_format(text: TextOptions | None) -> dict[str, Any] | None:
    if text is None or text.format is None or text.format.type == "text":
        return None
    if text.format.type == "json_object":
        return {"type": "json_object"}
    schema = {"name": text.format.name or "response", "schema": text.format.schema_ or {}}
    if text.format.strict is not None:
        schema["strict"] = text.format.strict
    return {"type": "json_schema", "json_schema": schema}


def to_chat(request: ResponsesRequest, previous: list[dict[str, Any]] | None = None) -> ChatCompletionRequest:
    """`previous`: the stored conversation `previous_response_id` names, its answer included."""
    tool_choice: str | dict[str, Any] | None = None
    if isinstance(request.tool_choice, FunctionChoice):
        tool_choice = {"type": "function", "function": {"name": request.tool_choice.name}}
    elif request.tool_choice is not None:
        tool_choice = request.tool_choice
    body: dict[str, Any] = {
        "model": request.model, "messages": _chat_messages(request), "max_tokens": request.max_output_tokens,
        "stream": request.stream, "temperature": request.temperature, "top_p": request.top_p, "user": request.user,
        "tool_choice": tool_choice, "parallel_tool_calls": request.parallel_tool_calls,
        "response_format": _response_format(request.text), "store": request.store,
        "ttc": request.ttc.model_dump(exclude_none=True) if request.ttc else None,
    }
    functions = [t for t in request.tools or [] if t.type == "function"]
    for index, tool in enumerate(functions):
        if not tool.name:
            raise invalid_request(f"tools[{index}].name is required", param="tools")
    if functions:
        body["tools"] = [function_tool(t.name, t.description, t.parameters) for t in functions]
    new_turn = body["messages"]
    if not new_turn:
        raise invalid_request("`input` holds no message or function output to answer.", param="input")
    instructions = [{"role": "system", "content": request.instructions}] if request.instructions else []
    body["messages"] = [*instructions, *(previous or []), *new_turn]
    return translated_chat_request(body)
