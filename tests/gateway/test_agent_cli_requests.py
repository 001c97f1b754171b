"""Request shapes that the coding agent CLIs send (Claude Code 2.1, Codex 0.171; the CLIs themselves
run in `python -m bench.gateway.agents`), sent here through the official SDKs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import anthropic
import httpx
import openai
import pytest

from tests.gateway.conftest import OTHER_KEY, TENANT_KEY, RunningGateway, base_config, fake_model
from testkit.servers import ThreadedServer

BETAS = "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27,mid-conversation-system-2026-04-07,effort-2025-11-24"


def agents_config(upstream: str, tmp_path: Path) -> dict[str, Any]:
    config = base_config(upstream, tmp_path, ledger={"path": str(tmp_path / "l.db")})
    config["models"].append(fake_model("m", upstream, "m"))
    config["tenants"][0]["allowed_models"] = ["*"]
    config["tenants"][1]["rate_limits"] = {"rpm": 1}
    return config


def last_sent(upstream: ThreadedServer) -> dict[str, Any]:
    sent: dict[str, Any] = httpx.get(f"{upstream.url}/_requests").json()[-1]
    return sent


def test_claude_code_request_shapes(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path) -> None:
    """Claude Code's newer models (its default included) get a `system` turn inside `messages`, with
    adaptive thinking and an effort setting; its title call asks for structured output; its tool search
    answers with `tool_reference` blocks."""
    gw = start_gateway(agents_config(fake_upstream.url, tmp_path))
    client = anthropic.Anthropic(base_url=gw.url, api_key=TENANT_KEY, max_retries=0)
    messages: Any = [
        {"role": "user", "content": [{"type": "text", "text": "<system-reminder>date</system-reminder>"},
                                     {"type": "text", "text": "create hello.txt", "cache_control": {"type": "ephemeral"}}]},
        {"role": "system", "content": "Agent types: claude, Explore."},
    ]
    with client.messages.stream(model="m", max_tokens=4, messages=messages, system=[{"type": "text", "text": "You are Claude Code."}],
                                thinking={"type": "adaptive"},  # type: ignore[typeddict-item]
                                extra_body={"output_config": {"effort": "high"}, "context_management": {"edits": []}},
                                extra_query={"beta": "true"}, extra_headers={"anthropic-beta": BETAS}) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "text" and final.usage.output_tokens == 4
    assert last_sent(fake_upstream)["messages"] == [
        {"role": "system", "content": "You are Claude Code."},
        {"role": "user", "content": "<system-reminder>date</system-reminder>create hello.txt"},
        {"role": "system", "content": "Agent types: claude, Explore."},
    ]
    # structured output, as Claude Code asks for its session title: the chat upstream gets response_format
    schema = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"], "additionalProperties": False}
    titled = client.messages.create(model="m", max_tokens=4, messages=messages,
                                    extra_body={"output_config": {"effort": "high", "format": {"type": "json_schema", "schema": schema}}})
    assert last_sent(fake_upstream)["response_format"] == {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    assert titled.content[0].type == "text" and titled.content[0].text.startswith("{")
    # with tool search on, Claude Code answers its ToolSearch tool with `tool_reference` blocks: kept out of the chat tool turn
    client.messages.create(model="m", max_tokens=4, messages=[
        *messages, {"role": "assistant", "content": [{"type": "tool_use", "id": "ts1", "name": "ToolSearch", "input": {"query": "select:Task"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "ts1",
                                      "content": [{"type": "tool_reference", "tool_name": "TaskCreate"}, {"type": "text", "text": "found"}]}]}])
    assert last_sent(fake_upstream)["messages"][-1] == {"role": "tool", "tool_call_id": "ts1", "content": "found"}
    # count_tokens counts the tool definitions too, as Claude Code's context display expects
    tools: Any = [{"name": f"Tool{i}", "description": "Runs a command in the shell. " * 20,
                   "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}} for i in range(4)]
    bare = client.messages.count_tokens(model="m", messages=messages).input_tokens
    assert client.messages.count_tokens(model="m", messages=messages, tools=tools).input_tokens > bare + 4 * 100
    # a wrong key is final: Claude Code honours x-should-retry and otherwise resends its request ten times
    refused = httpx.post(f"{gw.url}/v1/messages?beta=true", json={"model": "m", "max_tokens": 4, "messages": messages},
                         headers={"x-api-key": "sk-wrong", "anthropic-beta": BETAS})
    assert refused.status_code == 401 and refused.headers["x-should-retry"] == "false"
    assert refused.json()["error"]["type"] == "authentication_error"
    # a rate limit is worth waiting for: Claude Code told not to retry would end its session instead
    limited = anthropic.Anthropic(base_url=gw.url, api_key=OTHER_KEY, max_retries=0)
    limited.messages.create(model="private", max_tokens=1, messages=messages)
    with pytest.raises(anthropic.RateLimitError) as info:
        limited.messages.create(model="private", max_tokens=1, messages=messages)
    assert int(info.value.response.headers["retry-after"]) >= 1 and "x-should-retry" not in info.value.response.headers


def test_codex_turn_replayed_with_text_calls_and_an_image_output(fake_upstream: ThreadedServer,
                                                                 start_gateway: Callable[..., RunningGateway], tmp_path: Path) -> None:
    """Codex replays a turn as a message item then its function_call items, and a tool that returned
    an image (view_image) as an output that is a list of content parts."""
    gw = start_gateway(agents_config(fake_upstream.url, tmp_path))
    client = gw.client()
    image = {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "original"}
    history: Any = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "look at pic.png"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Looking."}]},
        {"type": "function_call", "call_id": "c1", "name": "view_image", "arguments": '{"path":"pic.png"}'},
        {"type": "function_call", "call_id": "c2", "name": "exec_command", "arguments": '{"cmd":"pwd"}'},
        {"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_text", "text": "pic.png:"}, image]},
        {"type": "function_call_output", "call_id": "c2", "output": "/work"},
    ]
    events = [event.type for event in client.responses.create(model="m", input=history, max_output_tokens=3, stream=True, store=False,
                                                                 include=["reasoning.encrypted_content"], parallel_tool_calls=True,
                                                                 extra_body={"prompt_cache_key": "thread-1"})]
    assert events[0] == "response.created" and events[-1] == "response.completed"
    sent = last_sent(fake_upstream)["messages"]
    assert sent[1] == {"role": "assistant", "content": "Looking.", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "view_image", "arguments": '{"path":"pic.png"}'}},
        {"id": "c2", "type": "function", "function": {"name": "exec_command", "arguments": '{"cmd":"pwd"}'}}]}
    assert sent[2:] == [{"role": "tool", "tool_call_id": "c1", "content": "pic.png:"}, {"role": "tool", "tool_call_id": "c2", "content": "/work"}]
    # a freeform tool's call (Codex's apply_patch) goes back to a chat upstream as a function call
    client.responses.create(model="m", input=[*history[:2], {"type": "custom_tool_call", "call_id": "c3", "name": "apply_patch", "input": "*** Begin Patch"},
                                              {"type": "custom_tool_call_output", "call_id": "c3", "output": "Done"}])
    assert last_sent(fake_upstream)["messages"][1:] == [
        {"role": "assistant", "content": "Looking.", "tool_calls": [
            {"id": "c3", "type": "function", "function": {"name": "apply_patch", "arguments": '{"input":"*** Begin Patch"}'}}]},
        {"role": "tool", "tool_call_id": "c3", "content": "Done"}]
    with pytest.raises(openai.BadRequestError, match="'computer_call' item"):
        client.responses.create(model="m", input=[*history[:2], {"type": "computer_call", "call_id": "c4", "action": {}}])


def test_claude_code_history_with_server_tool_blocks(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway],
                                                    tmp_path: Path) -> None:
    """A conversation that used Anthropic's web search on an earlier turn, continued on a chat upstream:
    the server tool's blocks have no place there and are left out; what the model said stays."""
    gw = start_gateway(agents_config(fake_upstream.url, tmp_path))
    client = anthropic.Anthropic(base_url=gw.url, api_key=TENANT_KEY, max_retries=0)
    messages: Any = [
        {"role": "user", "content": "What is new in Python?"},
        {"role": "assistant", "content": [
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "python release"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1",
             "content": [{"type": "web_search_result", "url": "https://python.org", "title": "Python", "encrypted_content": "x"}]},
            {"type": "text", "text": "Python 3.15 is out."}]},
        {"role": "user", "content": "Thanks."},
    ]
    client.messages.create(model="m", max_tokens=2, messages=messages)
    assert last_sent(fake_upstream)["messages"] == [
        {"role": "user", "content": "What is new in Python?"}, {"role": "assistant", "content": "Python 3.15 is out."},
        {"role": "user", "content": "Thanks."}]
    # a block type it does not take is named in the error, not reported as "content is no string"
    with pytest.raises(anthropic.BadRequestError, match="'made_up' block"):
        client.messages.create(model="m", max_tokens=2, messages=[{"role": "user", "content": [{"type": "made_up"}]}])  # type: ignore[list-item,typeddict-item]


def test_a_filtered_answer_is_an_incomplete_response(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway],
                                                    tmp_path: Path) -> None:
    config = agents_config(fake_upstream.url, tmp_path)
    config["models"].append(fake_model("filtered", fake_upstream.url, "filtered"))
    client = start_gateway(config).client()
    plain = client.responses.create(model="filtered", input="x", max_output_tokens=2)
    assert plain.status == "incomplete" and plain.incomplete_details is not None and plain.incomplete_details.reason == "content_filter"
    events = list(client.responses.create(model="filtered", input="x", max_output_tokens=2, stream=True))
    completed = events[-1]
    assert completed.type == "response.completed" and completed.response.status == "incomplete"
    assert completed.response.incomplete_details is not None and completed.response.incomplete_details.reason == "content_filter"
