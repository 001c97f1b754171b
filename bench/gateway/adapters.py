"""litellm's Messages/Responses adapters against the gateway's own translation, side by side.

    python -m bench.gateway.adapters [--budget-ms 150] [--verbose]

Self-contained: no network, no gateway process. For a corpus of realistic requests (shapes that
Claude Code and Codex send, plus the cases tests/gateway/test_*_api.py cover) it runs
  request:  Messages/Responses request -> chat request
            ours:    validate (MessagesRequest / ResponsesRequest) + to_chat (which validates the chat request)
            litellm: LiteLLMAnthropicMessagesAdapter.translate_anthropic_to_openai /
                     LiteLLMCompletionResponsesConfig.transform_responses_api_request_to_chat_completion_request
  response: chat.completion body -> Messages / Responses body
            ours:    AnthropicMessages.body / ResponsesDialect.body (dicts in, dicts out)
            litellm: translate_openai_response_to_anthropic(ModelResponse(**body)) /
                     transform_chat_completion_response_to_responses_api_response(...).model_dump()
  stream:   chat chunks -> Anthropic events (ours AnthropicStream, litellm AnthropicStreamWrapper)
and reports, per case, whether each succeeds, where the results differ in meaning, and which of
litellm's outputs would not be a valid OpenAI chat request for the gateway's fast path (which forwards
the chat body as is). Timings are µs per translation, median of 3 runs of as many iterations as fit
in --budget-ms.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm  # noqa: E402
from litellm.llms.anthropic.pass_through.adapters.streaming_iterator import AnthropicStreamWrapper  # noqa: E402
from litellm.llms.anthropic.pass_through.adapters.transformation import LiteLLMAnthropicMessagesAdapter  # noqa: E402
from litellm.responses.litellm_completion_transformation.transformation import (  # noqa: E402
    LiteLLMCompletionResponsesConfig as LitellmResponses,
)
from litellm.types.utils import ModelResponse, ModelResponseStream  # noqa: E402

from gateway.messages.dialect import MESSAGES, AnthropicStream  # noqa: E402
from gateway.messages.request import MessagesRequest  # noqa: E402
from gateway.messages.request import to_chat as messages_to_chat  # noqa: E402
from gateway.pipeline.respond import Answer  # noqa: E402
from gateway.responses.dialect import ResponsesDialect  # noqa: E402
from gateway.responses.request import ResponsesRequest  # noqa: E402
from gateway.responses.request import to_chat as responses_to_chat  # noqa: E402
from gateway.schemas import ChatCompletionRequest  # noqa: E402

litellm.suppress_debug_info = True
logging.getLogger("LiteLLM").setLevel(logging.ERROR)
ANTHROPIC = LiteLLMAnthropicMessagesAdapter()

# ---------------------------------------------------------------- corpus: requests

SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"], "additionalProperties": False}
BASH = {"name": "Bash", "description": "Run a shell command.", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}
READ = {"name": "Read", "description": "Read a file.", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}
PNG = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
TOOL_TURNS: list[dict[str, Any]] = [
    {"role": "user", "content": "list the files, then read a.txt"},
    {"role": "assistant", "content": [{"type": "text", "text": "Listing."},
                                      {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}},
                                      {"type": "tool_use", "id": "toolu_2", "name": "Read", "input": {"path": "a.txt"}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt\nb.txt"},
                                 {"type": "tool_result", "tool_use_id": "toolu_2", "content": "no such file", "is_error": True},
                                 {"type": "text", "text": "go on"}]},
]


def claude_code_like() -> dict[str, Any]:
    """About the shape Claude Code sends: long system blocks with cache_control, ~20 tools, a few turns."""
    tools = [{"name": f"Tool{i}", "description": "Runs a command in the shell and returns its output. " * 12,
              "input_schema": {"type": "object", "properties": {"command": {"type": "string", "description": "the command"},
                                                                "timeout": {"type": "number"}}, "required": ["command"]}}
             for i in range(20)]
    return {"model": "claude-sonnet-4-5", "max_tokens": 32000, "stream": True, "metadata": {"user_id": "user_abc_session_1"},
            "system": [{"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
                       {"type": "text", "text": "Follow the instructions. " * 400, "cache_control": {"type": "ephemeral"}}],
            "tools": tools, "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"},
            "messages": [{"role": "user", "content": [{"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
                                                      {"type": "text", "text": "fix the failing test", "cache_control": {"type": "ephemeral"}}]},
                         {"role": "assistant", "content": [{"type": "thinking", "thinking": "Run tests first.", "signature": "sig1"},
                                                           {"type": "tool_use", "id": "toolu_a", "name": "Tool0", "input": {"command": "pytest -x"}}]},
                         {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_a", "content": "1 failed " * 50}]},
                         {"role": "system", "content": "Agent types: claude, Explore."}]}


MESSAGES_CASES: dict[str, dict[str, Any]] = {
    "plain text": {"model": "m", "max_tokens": 256, "messages": [{"role": "user", "content": "Hello"}]},
    "system string": {"model": "m", "max_tokens": 256, "system": "Be brief.", "temperature": 0.2, "top_p": 0.9,
                      "messages": [{"role": "user", "content": "Hello"}]},
    "system blocks + cache_control": {"model": "m", "max_tokens": 256,
                                      "system": [{"type": "text", "text": "You are Claude Code."},
                                                 {"type": "text", "text": " Be brief.", "cache_control": {"type": "ephemeral"}}],
                                      "messages": [{"role": "user", "content": [{"type": "text", "text": "<r>date</r>"},
                                                                                {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}]},
    "tool_use/tool_result round trip": {"model": "m", "max_tokens": 256, "tools": [BASH, READ], "tool_choice": {"type": "auto"},
                                        "messages": TOOL_TURNS},
    "tool_result list + image": {"model": "m", "max_tokens": 256, "tools": [READ], "messages": [
        {"role": "user", "content": [{"type": "text", "text": "what is in pic.png?"}, {"type": "image", "source": PNG}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "pic.png"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": [{"type": "text", "text": "pic.png:"}, {"type": "image", "source": PNG}]}]}]},
    "tool_result tool_reference (ToolSearch)": {"model": "m", "max_tokens": 256, "messages": [
        {"role": "user", "content": "find the task tool"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "ts1", "name": "ToolSearch", "input": {"query": "select:Task"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "ts1",
                                      "content": [{"type": "tool_reference", "tool_name": "TaskCreate"}, {"type": "text", "text": "found"}]}]}]},
    "system role turn inside messages": {"model": "m", "max_tokens": 256, "system": [{"type": "text", "text": "You are Claude Code."}],
                                         "messages": [{"role": "user", "content": "create hello.txt"},
                                                      {"role": "system", "content": "Agent types: claude, Explore."}]},
    "output_config.format json_schema": {"model": "m", "max_tokens": 256, "messages": [{"role": "user", "content": "title?"}],
                                         "output_config": {"effort": "high", "format": {"type": "json_schema", "schema": SCHEMA}}},
    "stop_sequences + metadata": {"model": "m", "max_tokens": 256, "stop_sequences": ["\n\nHuman:", "END"],
                                  "metadata": {"user_id": "u-42"}, "messages": [{"role": "user", "content": "count"}]},
    "tool_choice any": {"model": "m", "max_tokens": 256, "tools": [BASH], "tool_choice": {"type": "any"},
                        "messages": [{"role": "user", "content": "ls"}]},
    "tool_choice tool": {"model": "m", "max_tokens": 256, "tools": [BASH, READ], "tool_choice": {"type": "tool", "name": "Read"},
                         "messages": [{"role": "user", "content": "read a"}]},
    "tool_choice none": {"model": "m", "max_tokens": 256, "tools": [BASH], "tool_choice": {"type": "none"},
                         "messages": [{"role": "user", "content": "hi"}]},
    "thinking blocks in history": {"model": "m", "max_tokens": 2048, "thinking": {"type": "enabled", "budget_tokens": 1024}, "tools": [BASH],
                                   "messages": [{"role": "user", "content": "ls"},
                                                {"role": "assistant", "content": [
                                                    {"type": "thinking", "thinking": "Use Bash.", "signature": "sig"},
                                                    {"type": "redacted_thinking", "data": "opaque"},
                                                    {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}]},
                                                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt"}]}]},
    "server tool web_search_20250305": {"model": "m", "max_tokens": 256, "messages": [{"role": "user", "content": "news?"}],
                                        "tools": [BASH, {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]},
    "server_tool_use blocks in history": {"model": "m", "max_tokens": 256, "messages": [
        {"role": "user", "content": "news?"},
        {"role": "assistant", "content": [{"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "news"}},
                                          {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1",
                                           "content": [{"type": "web_search_result", "url": "https://e.x", "title": "E", "encrypted_content": "x"}]},
                                          {"type": "text", "text": "Here is the news."}]},
        {"role": "user", "content": "thanks"}]},
    "Claude Code-like (20 tools, 10 KB system)": claude_code_like(),
}

FN = {"type": "function", "name": "exec_command", "description": "Run a command.",
      "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}}
IMAGE = {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "original"}


def codex_like() -> dict[str, Any]:
    tools = [{**FN, "name": f"tool_{i}", "description": "Runs a command and returns its output. " * 10} for i in range(15)]
    history: list[dict[str, Any]] = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "fix the build"}]}]
    for i in range(4):
        history += [{"type": "reasoning", "id": f"rs_{i}", "summary": [], "encrypted_content": "gAAAA" + "x" * 200},
                    {"type": "function_call", "call_id": f"call_{i}", "name": "tool_0", "arguments": json.dumps({"cmd": f"make step{i}"})},
                    {"type": "function_call_output", "call_id": f"call_{i}", "output": "ok\n" * 40}]
    return {"model": "gpt-5-codex", "instructions": "You are Codex, a coding agent. " * 300, "input": history, "tools": tools,
            "tool_choice": "auto", "parallel_tool_calls": False, "stream": True, "store": False,
            "include": ["reasoning.encrypted_content"], "prompt_cache_key": "thread-1", "reasoning": {"effort": "medium", "summary": "auto"}}


RESPONSES_CASES: dict[str, dict[str, Any]] = {
    "plain text (string input)": {"model": "m", "input": "Hello", "max_output_tokens": 256},
    "instructions + message items": {"model": "m", "instructions": "Be brief.", "temperature": 0.2, "top_p": 0.9,
                                     "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello"}]}]},
    "function_call round trip": {"model": "m", "tools": [FN], "tool_choice": "required", "input": [
        {"role": "user", "content": "where am I?"},
        {"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": '{"cmd":"pwd"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "/work"}]},
    "Codex turn: text + 2 calls + list output w/ image": {"model": "m", "tools": [FN], "parallel_tool_calls": True, "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "look at pic.png"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Looking."}]},
        {"type": "function_call", "call_id": "c1", "name": "view_image", "arguments": '{"path":"pic.png"}'},
        {"type": "function_call", "call_id": "c2", "name": "exec_command", "arguments": '{"cmd":"pwd"}'},
        {"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_text", "text": "pic.png:"}, IMAGE]},
        {"type": "function_call_output", "call_id": "c2", "output": "/work"}]},
    "text.format json_schema": {"model": "m", "input": "title?",
                                "text": {"format": {"type": "json_schema", "name": "title", "schema": SCHEMA, "strict": True}}},
    "tool_choice function": {"model": "m", "tools": [FN], "tool_choice": {"type": "function", "name": "exec_command"}, "input": "pwd"},
    "tool_choice none": {"model": "m", "tools": [FN], "tool_choice": "none", "input": "hi"},
    "metadata + user": {"model": "m", "input": "hi", "metadata": {"trace": "t-1"}, "user": "u-42"},
    "vendor tools (web_search, local_shell, file_search)": {"model": "m", "input": "news?", "tools": [
        FN, {"type": "web_search"}, {"type": "local_shell"}, {"type": "file_search", "vector_store_ids": ["vs_1"]}]},
    "developer + system role items": {"model": "m", "input": [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Use tabs."}]},
        {"type": "message", "role": "system", "content": "Be brief."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]},
    "reasoning item in history": {"model": "m", "tools": [FN], "input": [
        {"role": "user", "content": "pwd"},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "call pwd"}], "encrypted_content": "gAAAA"},
        {"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": '{"cmd":"pwd"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "/work"}]},
    "custom tool apply_patch (freeform)": {"model": "m", "input": [
        {"role": "user", "content": "patch it"},
        {"type": "custom_tool_call", "call_id": "c3", "name": "apply_patch", "input": "*** Begin Patch"},
        {"type": "custom_tool_call_output", "call_id": "c3", "output": "done"}],
        "tools": [{"type": "custom", "name": "apply_patch", "description": "patch", "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}}]},
    "Codex-like (15 tools, 10 KB instructions)": codex_like(),
}

# ---------------------------------------------------------------- corpus: chat answers

USAGE = {"prompt_tokens": 21, "completion_tokens": 9, "total_tokens": 30}


def completion(message: dict[str, Any], finish: str) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}], "usage": USAGE}


def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


ANSWERS: dict[str, dict[str, Any]] = {
    "text": completion({"content": "Hello there."}, "stop"),
    "text + 2 tool calls": completion({"content": "Let me check.", "tool_calls": [call("call_1", "Bash", '{"command":"ls"}'),
                                                                                    call("call_2", "Read", '{"path":"a.txt"}')]}, "tool_calls"),
    "tool call, no text": completion({"content": None, "tool_calls": [call("call_1", "Bash", '{"command":"ls"}')]}, "tool_calls"),
    "cut off (length)": completion({"content": "Once upon a"}, "length"),
    "content_filter": completion({"content": ""}, "content_filter"),
    "tool call, invalid JSON args": completion({"content": None, "tool_calls": [call("call_1", "Bash", '{"command": "ls')]}, "tool_calls"),
    "reasoning_content + text": completion({"content": "42.", "reasoning_content": "6 times 7."}, "stop"),
}

# ---------------------------------------------------------------- helpers

# What OpenAI's chat API takes: anything else is a key the gateway's fast path would forward as is.
OPENAI_TOP = {"model", "messages", "max_tokens", "max_completion_tokens", "stream", "stream_options", "temperature", "top_p", "stop", "n",
              "seed", "tools", "tool_choice", "parallel_tool_calls", "response_format", "user", "store", "metadata", "logit_bias",
              "logprobs", "top_logprobs", "presence_penalty", "frequency_penalty", "reasoning_effort", "service_tier",
              "prompt_cache_key", "safety_identifier", "modalities", "audio", "prediction", "verbosity", "web_search_options"}
OPENAI_MESSAGE = {"system": {"role", "content", "name"}, "developer": {"role", "content", "name"},
                  "user": {"role", "content", "name"}, "tool": {"role", "content", "tool_call_id"},
                  "assistant": {"role", "content", "name", "tool_calls", "refusal", "audio", "function_call"}}
PART_KEYS = {"text": {"type", "text"}, "image_url": {"type", "image_url"}, "input_audio": {"type", "input_audio"}, "file": {"type", "file"}}


def wire_issues(chat: dict[str, Any]) -> list[str]:
    """Where a chat request strays from OpenAI's chat-completions schema."""
    issues = [f"top-level `{k}`" for k, v in chat.items() if k not in OPENAI_TOP and v is not None]
    issues += [f"tools[{i}] of type `{t.get('type')}`: OpenAI chat takes function tools only"
               for i, t in enumerate(chat.get("tools") or []) if t.get("type") not in ("function", "custom")]
    if "web_search_options" in chat:
        issues.append("`web_search_options` (OpenAI takes it only for its *-search-preview models)")
    for i, m in enumerate(chat.get("messages", [])):
        role = m.get("role")
        issues += [f"messages[{i}].{k} ({role})" for k, v in m.items() if k not in OPENAI_MESSAGE.get(role, set()) and v is not None]
        issues += [f"messages[{i}].tool_calls[{j}].{k}" for j, c in enumerate(m.get("tool_calls") or [])
                   for k in c if k not in ("id", "type", "function")]
        for part in m.get("content") if isinstance(m.get("content"), list) else []:
            kind = part.get("type")
            if role in ("tool", "system", "developer") and kind != "text":
                issues.append(f"messages[{i}] ({role}) has a `{kind}` part: OpenAI takes text parts only there")
            issues += [f"messages[{i}] part `{kind}`.{k}" for k in part if k not in PART_KEYS.get(kind, {"type"})]
    return issues


def text_of(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text") + \
            "".join(f"<{p.get('type')}>" for p in content if isinstance(p, dict) and p.get("type") != "text")
    return content or ""


def norm_chat(chat: dict[str, Any]) -> dict[str, Any]:
    """The meaning of a chat request: messages as (role, text, tool calls / call id), and the options."""
    messages = []
    for m in chat["messages"]:
        calls = tuple((c["id"], c["function"]["name"], json.dumps(json.loads(c["function"]["arguments"] or "{}"), sort_keys=True))
                      for c in m.get("tool_calls") or [])
        messages.append((m["role"], text_of(m.get("content")), calls, m.get("tool_call_id")))
    tools = tuple((t.get("function") or {}).get("name") or f"<{t.get('type')}>" for t in chat.get("tools") or [])
    fmt = chat.get("response_format")
    fmt = (fmt["type"], json.dumps((fmt.get("json_schema") or {}).get("schema"), sort_keys=True)) if fmt else None
    return {"messages": messages, "tools": tools, "tool_choice": chat.get("tool_choice"), "response_format": fmt,
            "max_tokens": chat.get("max_tokens"), "stop": chat.get("stop"), "user": chat.get("user"),
            "temperature": chat.get("temperature"), "top_p": chat.get("top_p"), "parallel_tool_calls": chat.get("parallel_tool_calls")}


def differences(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    a, b = norm_chat(ours), norm_chat(theirs)
    out = []
    for key in a:
        if key == "messages" or a[key] == b[key]:
            continue
        out.append(f"{key}: ours {a[key]!r} / litellm {b[key]!r}")
    ma, mb = a["messages"], b["messages"]
    if [m[0] for m in ma] != [m[0] for m in mb]:
        out.append(f"roles: ours {[m[0] for m in ma]} / litellm {[m[0] for m in mb]}")
    else:
        for i, (x, y) in enumerate(zip(ma, mb)):
            for label, j in (("text", 1), ("tool_calls", 2), ("tool_call_id", 3)):
                if x[j] != y[j]:
                    out.append(f"messages[{i}].{label}: ours {shorten(x[j])} / litellm {shorten(y[j])}")
    return out


def shorten(value: Any, width: int = 70) -> str:
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def per_call_us(fn: Callable[[], Any], budget_ms: float) -> float:
    fn()
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < 0.02:
        fn()
        n += 1
    iterations = max(20, int(n * budget_ms / 20 / 3))
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(iterations):
            fn()
        runs.append((time.perf_counter() - t0) / iterations * 1e6)
    return statistics.median(runs)


def attempt(fn: Callable[[], Any]) -> tuple[Any, str | None]:
    try:
        return fn(), None
    except Exception as error:  # noqa: BLE001 - reported per case
        return None, f"{type(error).__name__}: {str(error).splitlines()[0][:90]}"


# ---------------------------------------------------------------- request direction

def ours_messages(body: dict[str, Any]) -> dict[str, Any]:
    return messages_to_chat(MessagesRequest.model_validate(body)).model_dump(exclude_none=True)


def litellm_messages(body: dict[str, Any]) -> dict[str, Any]:
    chat, _ = ANTHROPIC.translate_anthropic_to_openai(body)  # type: ignore[arg-type]  (it does not mutate its input: checked)
    return dict(chat)


def ours_responses(body: dict[str, Any]) -> dict[str, Any]:
    return responses_to_chat(ResponsesRequest.model_validate(body)).model_dump(exclude_none=True)


def litellm_responses(body: dict[str, Any]) -> dict[str, Any]:
    optional = {k: v for k, v in body.items() if k not in ("model", "input", "stream")}
    return LitellmResponses.transform_responses_api_request_to_chat_completion_request(
        model=body["model"], input=body["input"], responses_api_request=optional, stream=body.get("stream"))


def request_direction(api: str, cases: dict[str, dict[str, Any]], ours: Callable[[dict[str, Any]], dict[str, Any]],
                      theirs: Callable[[dict[str, Any]], dict[str, Any]], budget_ms: float, rows: list[list[str]],
                      notes: list[str]) -> None:
    for name, body in cases.items():
        mine, my_error = attempt(lambda: ours(body))
        lite, lite_error = attempt(lambda: theirs(body))
        pipeline_error = None
        if lite is not None:
            _, pipeline_error = attempt(lambda: ChatCompletionRequest.model_validate(lite))
        found: list[str] = []
        if mine is not None and lite is not None:
            _, diff_error = attempt(lambda: found.extend(differences(mine, lite)))
            if diff_error:
                found.append(f"not comparable: {diff_error}")
        issues = wire_issues(lite) if lite is not None else []
        my_issues = wire_issues(mine) if mine is not None else []
        t_ours = per_call_us(lambda: ours(body), budget_ms) if my_error is None else None
        t_lite = per_call_us(lambda: theirs(body), budget_ms) if lite_error is None else None
        # What the gateway would spend with litellm's adapter in place of to_chat: the adapter, then the
        # ChatCompletionRequest the pipeline runs on (still without validating the request as sent).
        t_in = per_call_us(lambda: ChatCompletionRequest.model_validate(theirs(body)), budget_ms) \
            if lite_error is None and pipeline_error is None else None
        rows.append([f"{api} req", name, "ok" if my_error is None else "400", "ok" if lite_error is None else "EXC",
                     str(len(found)), str(len(issues)), fmt_us(t_ours), fmt_us(t_lite), fmt_us(t_in), ratio(t_ours, t_in)])
        lines = []
        if my_error:
            lines.append(f"ours raises {my_error}")
            if lite is not None:
                lines.append("litellm gives: " + shorten([(m["role"], text_of(m.get("content")),
                                                           [c["function"]["name"] for c in m.get("tool_calls") or []]) for m in lite["messages"]], 400))
        if lite_error:
            lines.append(f"litellm raises {lite_error}")
        if pipeline_error:
            lines.append(f"litellm output refused by the gateway's ChatCompletionRequest: {pipeline_error}")
        lines += [f"differs: {d}" for d in found]
        lines += [f"litellm not OpenAI chat: {i}" for i in issues]
        lines += [f"ours not OpenAI chat: {i}" for i in my_issues]
        if lines:
            notes.append(f"[{api} req] {name}\n    " + "\n    ".join(lines))


# ---------------------------------------------------------------- response direction

class FakeAccount:
    calls: list[Any] = []
    total_cost_usd = 0.0

    def usage(self) -> dict[str, int]:
        return dict(USAGE)


CTX: Any = SimpleNamespace(request_id="r1", wall_time=1700000000.0, router_info=None, account=FakeAccount())


def norm_messages_body(body: dict[str, Any]) -> dict[str, Any]:
    blocks = []
    for b in body["content"]:
        if b["type"] == "text":
            blocks.append(("text", b["text"]))
        elif b["type"] == "tool_use":
            blocks.append(("tool_use", b["id"], b["name"], json.dumps(b["input"], sort_keys=True)))
        else:
            blocks.append((b["type"],))
    usage = body.get("usage") or {}
    return {"content": blocks, "stop_reason": body.get("stop_reason"),
            "usage": (usage.get("input_tokens"), usage.get("output_tokens"))}


def norm_responses_body(body: dict[str, Any]) -> dict[str, Any]:
    items = []
    for item in body["output"]:
        if item["type"] == "message":
            items.append(("message", "".join(p.get("text", "") for p in item["content"])))
        elif item["type"] == "function_call":
            items.append(("function_call", item["call_id"], item["name"], item["arguments"]))
        else:
            items.append((item["type"],))
    usage = body.get("usage") or {}
    return {"output": items, "status": body.get("status"), "incomplete": (body.get("incomplete_details") or {}).get("reason"),
            "usage": (usage.get("input_tokens"), usage.get("output_tokens"), usage.get("total_tokens"))}


RESPONSES_ECHO = RESPONSES_CASES["function_call round trip"]
RESPONSES_REQUEST = ResponsesRequest.model_validate(RESPONSES_ECHO)


def response_direction(budget_ms: float, rows: list[list[str]], notes: list[str]) -> None:
    optional = {k: v for k, v in RESPONSES_ECHO.items() if k not in ("model", "input", "stream")}
    dialect = ResponsesDialect(RESPONSES_REQUEST)
    pairs: list[tuple[str, Callable[[dict[str, Any]], Any], Callable[[dict[str, Any]], Any], Callable[[dict[str, Any]], Any]]] = [
        ("messages", lambda a: MESSAGES.body(CTX, Answer(a, "m", None)),
         lambda a: ANTHROPIC.translate_openai_response_to_anthropic(ModelResponse(**a)), norm_messages_body),
        ("responses", lambda a: dialect.body(CTX, Answer(a, "m", None)),
         lambda a: LitellmResponses.transform_chat_completion_response_to_responses_api_response(
             RESPONSES_ECHO["input"], optional, ModelResponse(**a)).model_dump(), norm_responses_body),
    ]
    for api, ours, theirs, norm in pairs:
        for name, answer in ANSWERS.items():
            mine, my_error = attempt(lambda: ours(answer))
            lite, lite_error = attempt(lambda: theirs(answer))
            found = []
            if mine is not None and lite is not None:
                a, b = norm(mine), norm(dict(lite))
                found = [f"{k}: ours {shorten(a[k], 60)} / litellm {shorten(b[k], 60)}" for k in a if a[k] != b[k]]
            t_ours = per_call_us(lambda: ours(answer), budget_ms) if my_error is None else None
            t_lite = per_call_us(lambda: theirs(answer), budget_ms) if lite_error is None else None
            rows.append([f"{api} resp", name, "ok" if my_error is None else "EXC", "ok" if lite_error is None else "EXC",
                         str(len(found)), "-", fmt_us(t_ours), fmt_us(t_lite), "-", ratio(t_ours, t_lite)])
            lines = ([f"ours raises {my_error}"] if my_error else []) + ([f"litellm raises {lite_error}"] if lite_error else [])
            lines += [f"differs: {d}" for d in found]
            if lines:
                notes.append(f"[{api} resp] {name}\n    " + "\n    ".join(lines))


# ---------------------------------------------------------------- stream (Messages only)

def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "m",
                            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage:
        body["usage"] = usage
    return body


STREAMS: dict[str, list[dict[str, Any]]] = {
    "text (20 deltas)": [chunk({"role": "assistant", "content": ""})] + [chunk({"content": f"w{i} "}) for i in range(20)]
    + [chunk({}, "stop", USAGE)],
    "text + 2 tool calls": [chunk({"role": "assistant", "content": "Checking."}),
                            chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "Bash", "arguments": ""}}]}),
                            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"command":'}}]}),
                            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"ls"}'}}]}),
                            chunk({"tool_calls": [{"index": 1, "id": "call_2", "type": "function", "function": {"name": "Read", "arguments": '{"path":"a"}'}}]}),
                            chunk({}, "tool_calls", USAGE)],
}


def sse_events(frames: list[bytes]) -> list[dict[str, Any]]:
    events = []
    for frame in b"".join(frames).split(b"\n\n"):
        for line in frame.split(b"\n"):
            if line.startswith(b"data: "):
                events.append(json.loads(line[6:]))
    return events


def ours_stream(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    encoder = AnthropicStream(CTX, SimpleNamespace(served_model="m", strategy=None, report={}))  # type: ignore[arg-type]
    frames = [encoder.chunk(c) for c in chunks[:-1]]
    frames += encoder.end(chunks[-1], chunks[0])
    return sse_events(frames)


def litellm_stream(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    wrapper = AnthropicStreamWrapper(iter([ModelResponseStream(**c) for c in chunks]), model="m")
    return [dict(event) for event in wrapper]


def summarize_stream(events: list[dict[str, Any]]) -> dict[str, Any]:
    blocks: dict[int, list[Any]] = {}
    stop = usage = None
    for e in events:
        if e["type"] == "content_block_start":
            b = e["content_block"]
            blocks[e["index"]] = [b["type"], b.get("id"), b.get("name"), ""]
        elif e["type"] == "content_block_delta":
            d = e["delta"]
            blocks[e["index"]][3] += d.get("text") or d.get("partial_json") or ""
        elif e["type"] == "message_delta":
            stop = e["delta"].get("stop_reason")
            usage = (e.get("usage") or {}).get("output_tokens")
    return {"blocks": [tuple(blocks[i]) for i in sorted(blocks)], "stop_reason": stop, "output_tokens": usage,
            "event types": [e["type"] for e in events if e["type"] != "content_block_delta"]}


def stream_direction(budget_ms: float, rows: list[list[str]], notes: list[str]) -> None:
    for name, chunks in STREAMS.items():
        mine, my_error = attempt(lambda: ours_stream(chunks))
        lite, lite_error = attempt(lambda: litellm_stream(chunks))
        found = []
        if mine is not None and lite is not None:
            a, b = summarize_stream(mine), summarize_stream(lite)
            found = [f"{k}: ours {shorten(a[k], 200)} / litellm {shorten(b[k], 200)}" for k in a if a[k] != b[k]]
        t_ours = per_call_us(lambda: ours_stream(chunks), budget_ms) if my_error is None else None
        t_lite = per_call_us(lambda: litellm_stream(chunks), budget_ms) if lite_error is None else None
        rows.append(["messages stream", name, "ok" if my_error is None else "EXC", "ok" if lite_error is None else "EXC",
                     str(len(found)), "-", fmt_us(t_ours), fmt_us(t_lite), "-", ratio(t_ours, t_lite)])
        lines = ([f"ours raises {my_error}"] if my_error else []) + ([f"litellm raises {lite_error}"] if lite_error else [])
        lines += [f"differs: {d}" for d in found]
        if lines:
            notes.append(f"[messages stream] {name} (whole stream; µs are per stream)\n    " + "\n    ".join(lines))


# ---------------------------------------------------------------- main

def fmt_us(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def ratio(ours: float | None, theirs: float | None) -> str:
    return "-" if ours is None or theirs is None else f"{theirs / ours:.1f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-ms", type=float, default=150, help="time per timed cell, roughly")
    parser.add_argument("--only", choices=["request", "response", "stream"], help="run one direction")
    args = parser.parse_args()
    rows: list[list[str]] = []
    notes: list[str] = []
    if args.only in (None, "request"):
        request_direction("messages", MESSAGES_CASES, ours_messages, litellm_messages, args.budget_ms, rows, notes)
        request_direction("responses", RESPONSES_CASES, ours_responses, litellm_responses, args.budget_ms, rows, notes)
    if args.only in (None, "response"):
        response_direction(args.budget_ms, rows, notes)
    if args.only in (None, "stream"):
        stream_direction(args.budget_ms, rows, notes)
    head = ["direction", "case", "ours", "litellm", "semantic diffs", "litellm non-OpenAI keys", "ours µs", "litellm µs", "litellm + chat model µs", "litellm/ours"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print("\nours µs: request direction = validate the request as sent + to_chat (which builds the ChatCompletionRequest);"
          " response direction = the dialect's body(); stream = all events of one stream.\n"
          "litellm µs: the adapter alone; `litellm + chat model` adds ChatCompletionRequest.model_validate, which the pipeline"
          " needs; litellm/ours uses that column for requests. Response/stream: ModelResponse(Stream)(**dict) included,"
          " since the gateway's upstream fast path yields dicts.")
    print("\nDetails:")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
