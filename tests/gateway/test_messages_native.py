"""`/v1/messages` served by an Anthropic model: the body goes through as the client sent it, thinking
blocks and their signatures intact both ways, under the same ledger, with the official `anthropic` SDK.
The Anthropic upstream is faked (testkit/fake_anthropic.py): no Anthropic model is reachable here."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import anthropic
import httpx
import orjson
import pytest

from tests.gateway.conftest import RunningGateway, TENANT_KEY, base_config
from tests.gateway.test_responses_api import sent_bodies, spent
from testkit.fake_anthropic import CACHED, SIGNATURE, THOUGHT
from testkit.servers import ThreadedServer

BETA = "interleaved-thinking-2025-05-14"
HISTORY: list[Any] = [
    {"role": "user", "content": "one two"},
    {"role": "assistant", "content": [{"type": "thinking", "thinking": "earlier thought", "signature": "sig-earlier"},
                                      {"type": "text", "text": "three", "cache_control": {"type": "ephemeral"}}]},
    {"role": "user", "content": "four"},
]


def native_config(upstream: str, tmp_path: Path, ledger: dict[str, Any]) -> dict[str, Any]:
    config = base_config(upstream, tmp_path, ledger=ledger)
    config["models"].append({"name": "claude", "litellm_params": {"model": "anthropic/claude-upstream-id", "api_base": upstream,
                                                                    "api_key": "sk-ant-upstream"},
                             "price": {"input_per_1m": 3.0, "output_per_1m": 15.0}, "max_output_tokens": 64})
    config["tenants"][0]["allowed_models"] = ["claude", "fast"]
    return config


def cost_of(usage: anthropic.types.Usage) -> float:
    return ((usage.input_tokens + (usage.cache_read_input_tokens or 0) + (usage.cache_creation_input_tokens or 0)) * 3.0
            + usage.output_tokens * 15.0) / 1e6


def test_an_anthropic_model_is_served_natively(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway],
                                                tmp_path: Path, ledger_section: dict[str, Any]) -> None:
    gw = start_gateway(native_config(fake_upstream.url, tmp_path, ledger_section))
    client = anthropic.Anthropic(base_url=gw.url, api_key=TENANT_KEY, max_retries=0)
    raw = client.messages.with_raw_response.create(
        model="claude", max_tokens=3, system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=HISTORY, thinking={"type": "enabled", "budget_tokens": 1024}, extra_headers={"anthropic-beta": BETA},
        extra_body={"ttc": {"cost_weight": 0.5}})
    reply = raw.parse()
    thinking, text = reply.content
    assert thinking.type == "thinking" and (thinking.thinking, thinking.signature) == (THOUGHT, SIGNATURE)
    assert text.type == "text" and text.text == "tok tok tok" and reply.model == "claude"
    assert reply.usage.cache_read_input_tokens == CACHED
    sent = sent_bodies(fake_upstream)[-1]
    assert sent["model"] == "claude-upstream-id" and sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert sent["messages"] == HISTORY and sent["system"][0]["cache_control"] == {"type": "ephemeral"} and "ttc" not in sent
    headers = httpx.get(f"{fake_upstream.url}/_headers").json()[-1]
    assert headers["anthropic-beta"] == BETA and headers["x-api-key"] == "sk-ant-upstream"  # never the client's key
    assert float(raw.headers["x-ttc-cost-usd"]) == pytest.approx(cost_of(reply.usage))
    assert reply.model_extra is not None and reply.model_extra["ttc"]["cost_usd"] == pytest.approx(cost_of(reply.usage))

    with client.messages.stream(model="claude", max_tokens=2, messages=HISTORY, thinking={"type": "enabled", "budget_tokens": 1024}) as stream:
        streamed = stream.get_final_message()
    assert [block.type for block in streamed.content] == ["thinking", "text"]
    assert streamed.content[0].signature == SIGNATURE and streamed.content[1].text == "tok tok "  # type: ignore[union-attr]
    assert streamed.model == "claude" and streamed.usage.output_tokens == 2 + len(THOUGHT.split())
    assert spent(gw) == pytest.approx(cost_of(reply.usage) + cost_of(streamed.usage), abs=1e-9)


def test_the_native_stream_ends_with_the_gateway_s_cost(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway],
                                                        tmp_path: Path) -> None:
    gw = start_gateway(native_config(fake_upstream.url, tmp_path, {"path": str(tmp_path / "l.db")}))
    body = {"model": "claude", "max_tokens": 2, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", f"{gw.url}/v1/messages", json=body, headers={"x-api-key": TENANT_KEY}) as response:
        events = [orjson.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")]
    kinds = [event["type"] for event in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"] and "ping" in kinds
    assert events[0]["message"]["model"] == "claude"
    assert events[-2]["ttc"]["cost_usd"] == pytest.approx(spent(gw), abs=1e-9) and events[-2]["ttc"]["cost_usd"] > 0


def test_a_chat_model_behind_messages_is_still_translated(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway],
                                                          tmp_path: Path) -> None:
    gw = start_gateway(native_config(fake_upstream.url, tmp_path, {"path": str(tmp_path / "l.db")}))
    client = anthropic.Anthropic(base_url=gw.url, api_key=TENANT_KEY, max_retries=0)
    reply = client.messages.create(model="fast", max_tokens=2, messages=[{"role": "user", "content": "hi"}])
    assert [block.type for block in reply.content] == ["text"] and sent_bodies(fake_upstream)[-1]["model"] == "fast"


def test_an_overloaded_anthropic_upstream_is_an_anthropic_error(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway],
                                                               tmp_path: Path) -> None:
    config = native_config(fake_upstream.url, tmp_path, {"path": str(tmp_path / "l.db")})
    config["models"][-1]["litellm_params"]["model"] = "anthropic/overloaded"
    config["models"][-1]["max_retries"] = 0
    gw = start_gateway(config)
    client = anthropic.Anthropic(base_url=gw.url, api_key=TENANT_KEY, max_retries=0)
    with pytest.raises(anthropic.InternalServerError) as failed:
        client.messages.create(model="claude", max_tokens=2, messages=[{"role": "user", "content": "hi"}])
    assert failed.value.body["type"] == "error" and "Overloaded" in failed.value.body["error"]["message"]  # type: ignore[index]
    assert spent(gw) == 0.0
