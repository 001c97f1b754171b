"""Request bodies, validated at the boundary. Responses stay plain dicts on the hot path."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# OpenAI chat parameters forwarded upstream when present.
PASSTHROUGH_PARAMS: tuple[str, ...] = (
    "temperature",
    "top_p",
    "stop",
    "seed",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "user",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "reasoning_effort",
)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class TtcOptions(BaseModel):
    """The `ttc` extension object a client may send in `extra_body`."""

    model_config = ConfigDict(extra="allow")

    strategy: str | None = None
    n: int | None = Field(default=None, ge=1, le=64)
    selector: str | None = None
    cost_weight: float | None = Field(default=None, ge=0)
    tolerance: float | None = Field(default=None, ge=0, le=1)
    max_cost_per_request_usd: float | None = Field(default=None, ge=0)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "function", "developer"]
    content: str | list[dict[str, Any]] | None = None

    @field_validator("content")
    @classmethod
    def _parts_are_typed(cls, content: str | list[dict[str, Any]] | None) -> str | list[dict[str, Any]] | None:
        # The shape every provider requires of content parts; checked here so that a bad part is
        # the caller's 400, not an upstream's 5xx.
        for index, part in enumerate(content if isinstance(content, list) else []):
            kind = part.get("type")
            if not isinstance(kind, str):
                raise ValueError(f"content[{index}].type must be a string such as 'text'")
            if kind == "text" and not isinstance(part.get("text"), str):
                raise ValueError(f"content[{index}].text must be a string")
        return content


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int = Field(default=1, ge=1, le=16)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = None
    # `false`: keep no content of this request in the request log (the gateway's reading of OpenAI's flag).
    store: bool | None = None
    ttc: TtcOptions | None = None

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        return value

    @field_validator("tools")
    @classmethod
    def _tools_are_functions(cls, tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for index, tool in enumerate(tools or []):
            if tool.get("type", "function") != "function":
                continue
            function = tool.get("function")
            if not isinstance(function, dict):
                raise ValueError(f"tools[{index}].function must be an object with a 'name'")
            if not isinstance(function.get("name"), str) or not function["name"]:
                raise ValueError(f"tools[{index}].function.name is required")
        return tools

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def message_dicts(self) -> list[dict[str, Any]]:
        return [m.model_dump(exclude_none=True) for m in self.messages]

    def passthrough(self) -> dict[str, Any]:
        fields = self.model_dump(include=set(PASSTHROUGH_PARAMS), exclude_none=True)
        extra = self.model_extra or {}
        for name in PASSTHROUGH_PARAMS:
            if name in extra and extra[name] is not None:
                fields[name] = extra[name]
        return fields


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if value == "" or value == []:
            raise ValueError("input must not be empty")
        return value


def function_tool(name: str, description: str | None, parameters: dict[str, Any] | None) -> dict[str, Any]:
    """A client tool in the chat form, from another API's spelling of it."""
    return {"type": "function", "function": {"name": name, "description": description or "",
                                             "parameters": parameters or {"type": "object", "properties": {}}}}


def translated_chat_request(fields: dict[str, Any]) -> ChatCompletionRequest:
    """The chat request another API's request becomes: unset fields dropped, and a stream always asks
    for the usage chunk, which those APIs report on their final event."""
    body = {k: v for k, v in fields.items() if v is not None}
    if body.get("stream"):
        body["stream_options"] = {"include_usage": True}
    return ChatCompletionRequest.model_validate(body)
