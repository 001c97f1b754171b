"""The Anthropic Messages API through the same pipeline, with the official `anthropic` SDK."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import anthropic
import httpx
import pytest

from tests.gateway.conftest import ADMIN_KEY, TENANT_KEY, RunningGateway, base_config, fake_model
from testkit.servers import ThreadedServer

ASK = [{"role": "user", "content": "one two three four five"}]
TOOLS = [{"name": "lookup", "description": "Look a thing up.", "input_schema": {"type": "object", "properties": {"x": {"type": "integer"}}}}]


def messages_config(upstream: str, tmp_path: Path, ledger: dict[str, Any], limit: float = 10.0) -> dict[str, Any]:
    config = base_config(upstream, tmp_path, ledger=ledger)
    config["models"] += [fake_model("tool", upstream, "tool"), fake_model("m", upstream, "m")]
    config["tenants"][0].update({"allowed_models": ["*"], "budgets": [{"window": "day", "limit_usd": limit}]})
    return config


def client_of(gw: RunningGateway, key: str = TENANT_KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0)


def spent(gw: RunningGateway) -> float:
    report = httpx.get(f"{gw.url}/v1/tenants/tenant-a/usage", headers={"authorization": f"Bearer {ADMIN_KEY}"}).json()
    return float(report["windows"][0]["spent_usd"])


def test_messages_plain_and_streamed_are_charged_what_they_report(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway],
                                                                   tmp_path: Path, ledger_section: dict[str, Any]) -> None:
    gw = start_gateway(messages_config(fake_upstream.url, tmp_path, ledger_section))
    client = client_of(gw)
    raw = client.messages.with_raw_response.create(model="m", max_tokens=5, system="Be brief.", messages=ASK)
    reply = raw.parse()
    assert [block.type for block in reply.content] == ["text"] and reply.content[0].text == "tok tok tok tok tok"
    assert reply.stop_reason == "max_tokens" and reply.model == "m" and reply.id.startswith("msg_")
    assert reply.usage.output_tokens == 5 and reply.usage.input_tokens > 0
    ttc = reply.model_extra["ttc"]
    assert float(raw.headers["x-ttc-cost-usd"]) == pytest.approx(ttc["cost_usd"]) and raw.headers["x-request-id"] in reply.id
    with client.messages.stream(model="m", max_tokens=4, messages=ASK) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert {"content_block_start", "content_block_delta", "content_block_stop", "message_delta"} <= set(events)
    assert final.content[0].text == "tok tok tok tok" and final.usage.output_tokens == 4
    prices = (1.0, 2.0)  # fake_model's price per 1M tokens
    charged = sum((u.input_tokens * prices[0] + u.output_tokens * prices[1]) / 1e6 for u in (reply.usage, final.usage))
    assert spent(gw) == pytest.approx(charged, abs=1e-6)
    # the system prompt reached the upstream as a system turn
    sent = httpx.get(f"{fake_upstream.url}/_requests").json()
    assert any(body.get("messages", [{}])[0] == {"role": "system", "content": "Be brief."} for body in sent)


def test_a_tool_round_trip(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path) -> None:
    gw = start_gateway(messages_config(fake_upstream.url, tmp_path, {"path": str(tmp_path / "l.db")}))
    client = client_of(gw)
    asked = client.messages.create(model="tool", max_tokens=8, tools=TOOLS, messages=[{"role": "user", "content": "Look up x."}])
    (call,) = [block for block in asked.content if block.type == "tool_use"]
    assert asked.stop_reason == "tool_use" and call.name == "lookup" and call.input == {"x": 1}
    with client.messages.stream(model="tool", max_tokens=8, tools=TOOLS, messages=[{"role": "user", "content": "Look up x."}]) as stream:
        streamed = stream.get_final_message()
    assert [b.type for b in streamed.content] == ["tool_use"] and streamed.content[0].input == {"x": 1}
    answered = client.messages.create(model="tool", max_tokens=3, messages=[
        {"role": "user", "content": "Look up x."},
        {"role": "assistant", "content": [{"type": "tool_use", "id": call.id, "name": "lookup", "input": call.input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "x is 42"}]},
    ])
    assert answered.content[0].type == "text" and answered.stop_reason == "max_tokens"
    last = httpx.get(f"{fake_upstream.url}/_requests").json()[-1]["messages"]
    assert last[1]["role"] == "assistant" and last[1]["tool_calls"][0]["function"] == {"name": "lookup", "arguments": '{"x":1}'}
    assert last[2] == {"role": "tool", "tool_call_id": call.id, "content": "x is 42"}


def test_a_strategy_through_messages(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path) -> None:
    gw = start_gateway(messages_config(fake_upstream.url, tmp_path, {"path": str(tmp_path / "l.db")}))
    raw = client_of(gw).messages.with_raw_response.create(model="m", max_tokens=3, messages=ASK,
                                                          extra_body={"ttc": {"strategy": "best_of_n", "n": 3}})
    reply = raw.parse()
    assert raw.headers["x-ttc-strategy"] == "best_of_n" and len(reply.model_extra["ttc"]["calls"]) == 3
    assert reply.usage.output_tokens == 9 and spent(gw) == pytest.approx(reply.model_extra["ttc"]["cost_usd"], abs=1e-6)


def test_errors_come_in_anthropic_shape(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path) -> None:
    gw = start_gateway(messages_config(fake_upstream.url, tmp_path, {"path": str(tmp_path / "l.db")}, limit=0.00002))
    client = client_of(gw)
    cases: list[tuple[type[anthropic.APIStatusError], str, Callable[[], object]]] = [
        (anthropic.AuthenticationError, "authentication_error",
         lambda: client_of(gw, "sk-wrong").messages.create(model="m", max_tokens=2, messages=ASK)),
        (anthropic.NotFoundError, "not_found_error", lambda: client.messages.create(model="nope", max_tokens=2, messages=ASK)),
        (anthropic.BadRequestError, "invalid_request_error",
         lambda: client.messages.create(model="m", max_tokens=2, messages=[{"role": "robot", "content": "x"}])),  # type: ignore[list-item]
        (anthropic.BadRequestError, "invalid_request_error", lambda: client.post("/v1/messages", cast_to=object,
                                                                                 body={"model": "m", "messages": ASK})),  # no max_tokens
        (anthropic.RateLimitError, "rate_limit_error", lambda: client.messages.create(model="m", max_tokens=64, messages=ASK)),
    ]
    for error_class, kind, call in cases:
        with pytest.raises(error_class) as info:
            call()
        assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == kind, info.value.body  # type: ignore[index]
    # the budget 429 is final: the SDK, left to retry as it likes, does not
    retrying = anthropic.Anthropic(base_url=gw.url, api_key=TENANT_KEY)
    with pytest.raises(anthropic.RateLimitError):
        retrying.messages.create(model="m", max_tokens=64, messages=ASK)
    metrics = httpx.get(f"{gw.url}/metrics").text
    assert 'ttc_requests_total{model="m",status="429",tenant="tenant-a"} 2.0' in metrics
    unknown = httpx.post(f"{gw.url}/v1/messages/batches", headers={"x-api-key": TENANT_KEY}, json={})
    assert unknown.status_code in (404, 405) and unknown.json()["type"] == "error"


def test_count_tokens(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path) -> None:
    gw = start_gateway(messages_config(fake_upstream.url, tmp_path, {"path": str(tmp_path / "l.db")}))
    client = client_of(gw)
    short = client.messages.count_tokens(model="m", messages=[{"role": "user", "content": "hi"}]).input_tokens
    long = client.messages.count_tokens(model="m", system="You are terse.", messages=ASK * 3).input_tokens
    assert 0 < short < long


def test_a_coding_agent_shaped_request(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path) -> None:
    """What Claude Code sends: `?beta=true`, beta headers, cache_control everywhere, thinking blocks and a
    server tool next to client tools, a tool result holding an image."""
    gw = start_gateway(messages_config(fake_upstream.url, tmp_path, {"path": str(tmp_path / "l.db")}))
    body = {
        "model": "tool", "max_tokens": 16, "stream": True, "thinking": {"type": "enabled", "budget_tokens": 1024},
        "system": [{"type": "text", "text": "You are an agent.", "cache_control": {"type": "ephemeral"}}],
        "tools": [*({**tool, "cache_control": {"type": "ephemeral"}} for tool in TOOLS),
                  {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "List files.", "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "ls", "signature": "s"},
                                              {"type": "tool_use", "id": "t1", "name": "lookup", "input": {"x": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                          "content": [{"type": "text", "text": "a.txt"}, {"type": "image", "source": {"type": "base64", "data": ""}}]}]},
        ],
    }
    response = httpx.post(f"{gw.url}/v1/messages?beta=true", json=body, timeout=30,
                          headers={"x-api-key": TENANT_KEY, "anthropic-version": "2023-06-01", "anthropic-beta": "interleaved-thinking-2025-05-14"})
    assert response.status_code == 200, response.text
    assert "event: message_stop" in response.text and '"type":"tool_use"' in response.text
    sent = httpx.get(f"{fake_upstream.url}/_requests").json()[-1]
    assert [t["function"]["name"] for t in sent["tools"]] == ["lookup"]  # the server tool stays out
    assert sent["messages"][-1] == {"role": "tool", "tool_call_id": "t1", "content": "a.txt"}
