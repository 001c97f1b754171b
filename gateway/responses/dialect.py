"""Answers as Response objects and streams as the Responses API's typed events."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from gateway.errors import GatewayError
from gateway.pipeline.answer_parts import answer_parts, chunk_parts
from gateway.pipeline.context import RequestContext
from gateway.pipeline.respond import Answer, ChunkStream, StreamEncoder, ttc_object
from gateway.requestlog.row import LogRow
from gateway.responses.request import FunctionChoice, ResponsesRequest
from gateway.upstream import Json


def _usage(ctx: RequestContext) -> Json:
    usage = ctx.account.usage()
    return {"input_tokens": usage["prompt_tokens"], "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": usage["completion_tokens"], "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage["total_tokens"]}


def _message_item(item_id: str, text: str, status: str = "completed") -> Json:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}] if status == "completed" else []}


def _call_item(item_id: str, call_id: str, name: str, arguments: str, status: str = "completed") -> Json:
    return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": arguments, "status": status}


INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _mark_incomplete(body: Json, finish_reason: str | None) -> None:
    """A cut-off or filtered answer is `incomplete`, saying why, as OpenAI's own Responses are."""
    reason = INCOMPLETE_REASONS.get(finish_reason or "")
    if reason is not None:
        body["status"], body["incomplete_details"] = "incomplete", {"reason": reason}


class ResponsesDialect:
    """One per request: the Response object echoes the request's settings."""

    def __init__(self, request: ResponsesRequest) -> None:
        self.request = request

    def envelope(self, ctx: RequestContext, model: str, status: str, output: list[Json]) -> Json:
        request = self.request
        return {
            "id": f"resp_{ctx.request_id}", "object": "response", "created_at": int(ctx.wall_time), "status": status,
            "model": model, "output": output, "instructions": request.instructions,
            "max_output_tokens": request.max_output_tokens, "temperature": request.temperature, "top_p": request.top_p,
            "parallel_tool_calls": request.parallel_tool_calls is not False,
            "tool_choice": request.tool_choice.model_dump() if isinstance(request.tool_choice, FunctionChoice) else (request.tool_choice or "auto"),
            "tools": [tool.model_dump(exclude_none=True) for tool in request.tools or []],
            "text": {"format": request.text.format.model_dump(by_alias=True, exclude_none=True)} if request.text and request.text.format else {"format": {"type": "text"}},
            "metadata": request.metadata or {}, "previous_response_id": request.previous_response_id, "error": None, "incomplete_details": None,
            "usage": _usage(ctx) if status == "completed" else None,
        }

    def body(self, ctx: RequestContext, answer: Answer) -> Json:
        parts = answer_parts(answer.body)
        output = [_message_item(f"msg_{ctx.request_id}", parts.text)] if parts.text else []
        output += [_call_item(f"fc_{ctx.request_id}_{call.index}", call.id, call.name, call.arguments) for call in parts.tool_calls]
        body = self.envelope(ctx, answer.served_model, "completed", output)
        _mark_incomplete(body, parts.finish_reason)
        body["ttc"] = ttc_object(ctx, answer.strategy, answer.report)
        return body

    def encoder(self, ctx: RequestContext, stream: ChunkStream, include_usage: bool) -> StreamEncoder:
        return ResponsesStream(self, ctx, stream)

    def error(self, error: GatewayError) -> Response:
        return error.response()


class ResponsesStream:
    """Chat chunks in, typed Responses events out: a message item for text, one function_call
    item per tool call, and `response.completed` with usage at the end."""

    def __init__(self, dialect: ResponsesDialect, ctx: RequestContext, stream: ChunkStream) -> None:
        self.dialect = dialect
        self.ctx = ctx
        self.stream = stream
        self.sequence = 0
        self.started = False
        self.items: list[Json] = []  # output items so far, completed ones in their final form
        self.open: Json | None = None  # the item being streamed
        self.calls: dict[int, Json] = {}  # upstream tool-call index -> its function_call item
        # Deltas so far per item id, joined when the item closes: appending to the item's string
        # itself would copy the whole text at every delta.
        self.pieces: dict[str, list[str]] = {}
        self.finish_reason: str | None = None

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    def _start(self) -> list[bytes]:
        if self.started:
            return []
        self.started = True
        envelope = self.dialect.envelope(self.ctx, self.stream.served_model, "in_progress", [])
        return [self._event("response.created", response=envelope), self._event("response.in_progress", response=envelope)]

    def _close_open(self) -> list[bytes]:
        item, self.open = self.open, None
        if item is None:
            return []
        index = self.items.index(item)
        self._join(item)
        if item["type"] == "message":
            text = item["content"][0]["text"]
            frames = [self._event("response.output_text.done", item_id=item["id"], output_index=index, content_index=0, text=text, logprobs=[]),
                      self._event("response.content_part.done", item_id=item["id"], output_index=index, content_index=0, part=item["content"][0])]
        else:
            frames = [self._event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                                  arguments=item["arguments"], name=item["name"])]
        item["status"] = "completed"
        return frames + [self._event("response.output_item.done", output_index=index, item=item)]

    def _join(self, item: Json) -> None:
        joined = "".join(self.pieces.get(item["id"], ()))
        if item["type"] == "message":
            item["content"][0]["text"] = joined
        else:
            item["arguments"] = joined

    def _open(self, item: Json) -> list[bytes]:
        frames = self._close_open()
        self.pieces[item["id"]] = []
        self.items.append(item)
        self.open = item
        index = len(self.items) - 1
        added = {**item, "status": "in_progress"}
        if item["type"] == "message":
            added["content"] = []
            frames.append(self._event("response.output_item.added", output_index=index, item=added))
            frames.append(self._event("response.content_part.added", item_id=item["id"], output_index=index, content_index=0,
                                      part={"type": "output_text", "text": "", "annotations": []}))
        else:
            frames.append(self._event("response.output_item.added", output_index=index, item={**added, "arguments": ""}))
        return frames

    def _text_delta(self, chunk: Json) -> bytes | None:
        """The event for a chunk that only adds text to the message being streamed, or None for any
        other chunk: nearly every chunk of an answer is one, so it skips the general reading."""
        item = self.open
        choices = chunk.get("choices")
        if item is None or item["type"] != "message" or not isinstance(choices, list) or len(choices) != 1:
            return None
        choice = choices[0]
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(delta, dict) or delta.get("tool_calls") or choice.get("finish_reason"):
            return None
        text = delta.get("content")
        if not text or not isinstance(text, str):
            return b"" if text is None or text == "" else None
        self.pieces[item["id"]].append(text)
        return self._event("response.output_text.delta", item_id=item["id"], output_index=len(self.items) - 1,
                           content_index=0, delta=text, logprobs=[])

    def chunk(self, chunk: Json) -> bytes:
        quick = self._text_delta(chunk)
        if quick is not None:
            return quick
        frames = [] if self.started else self._start()
        parts = chunk_parts(chunk)
        self.finish_reason = parts.finish_reason or self.finish_reason
        if parts.text:
            if self.open is None or self.open["type"] != "message":
                frames += self._open(_message_item(f"msg_{self.ctx.request_id}_{len(self.items)}", ""))
            assert self.open is not None
            self.pieces[self.open["id"]].append(parts.text)
            frames.append(self._event("response.output_text.delta", item_id=self.open["id"], output_index=len(self.items) - 1,
                                      content_index=0, delta=parts.text, logprobs=[]))
        for call in parts.tool_calls:
            item = self.calls.get(call.index)
            if item is None:
                item = _call_item(f"fc_{self.ctx.request_id}_{call.index}", call.id, call.name, "", "in_progress")
                self.calls[call.index] = item
                frames += self._open(item)
            if call.arguments:
                self.pieces[item["id"]].append(call.arguments)
                if item is not self.open:  # a late piece of a call already closed: keep its final form whole
                    self._join(item)
                frames.append(self._event("response.function_call_arguments.delta", item_id=item["id"],
                                          output_index=self.items.index(item), delta=call.arguments))
        return b"".join(frames)

    def keepalive(self) -> bytes:
        return b"".join(self._start()) + b": keep-alive\n\n"

    def end(self, final: Json | None, first: Json | None) -> list[bytes]:
        frames = [self.chunk(final)] if final else []
        frames += self._start() + self._close_open()
        body = self.dialect.envelope(self.ctx, self.stream.served_model, "completed", self.items)
        _mark_incomplete(body, self.finish_reason)
        body["ttc"] = ttc_object(self.ctx, self.stream.strategy, self.stream.report)
        # Always `response.completed`, with the status inside saying "incomplete" for a cut-off answer:
        # the SDKs' stream helpers wait for this one event and fail on any other ending.
        frames.append(self._event("response.completed", response=body))
        return frames

    def error(self, failure: GatewayError) -> bytes:
        return b"".join(self._start()) + self._event("error", code=failure.code, message=failure.message, param=failure.param)


def stored_response(row: LogRow) -> Json:
    """A stored response as `GET /v1/responses/{id}` returns it: what the request log kept of it."""
    output = [_message_item(f"msg_{row.request_id}", row.response_text)] if row.response_text else []
    for index, call in enumerate(row.response_tool_calls or []):
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        output.append(_call_item(f"fc_{row.request_id}_{index}", str(call.get("id") or ""), str(function.get("name") or ""),
                                 str(function.get("arguments") or "")))
    return {"id": f"resp_{row.request_id}", "object": "response", "created_at": int(row.time), "status": "completed",
            "model": row.served_model, "output": output, "error": None, "incomplete_details": None, "metadata": {},
            "usage": {"input_tokens": row.prompt_tokens, "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens": row.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": row.prompt_tokens + row.completion_tokens},
            "ttc": {"cost_usd": row.cost_usd, "strategy": row.strategy, "router_version": row.router_version}}
