"""The OpenAI Responses API through the same pipeline, with the official `openai` SDK."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import httpx
import openai
import pytest

from tests.gateway.conftest import ADMIN_KEY, RunningGateway, base_config, fake_model
from testkit.servers import ThreadedServer

TOOLS: list[Any] = [{"type": "function", "name": "lookup", "description": "Look a thing up.",
                     "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}}]


def responses_config(upstream: str, tmp_path: Path, ledger: dict[str, Any], limit: float = 10.0) -> dict[str, Any]:
    config = base_config(upstream, tmp_path, ledger=ledger)
    config["models"] += [fake_model("tool", upstream, "tool"), fake_model("m", upstream, "m")]
    config["tenants"][0].update({"allowed_models": ["*"], "budgets": [{"window": "day", "limit_usd": limit}]})
    return config


def spent(gw: RunningGateway) -> float:
    report = httpx.get(f"{gw.url}/v1/tenants/tenant-a/usage", headers={"authorization": f"Bearer {ADMIN_KEY}"}).json()
    return float(report["windows"][0]["spent_usd"])


def sent_bodies(upstream: ThreadedServer) -> list[dict[str, Any]]:
    return httpx.get(f"{upstream.url}/_requests").json()


def test_responses_plain_and_streamed_are_charged_what_they_report(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway],
                                                                    tmp_path: Path, ledger_section: dict[str, Any]) -> None:
    gw = start_gateway(responses_config(fake_upstream.url, tmp_path, ledger_section))
    client = gw.client()
    raw = client.responses.with_raw_response.create(model="m", input="one two three", instructions="Be brief.", max_output_tokens=5,
                                                    metadata={"case": "plain"})
    reply = raw.parse()
    assert reply.output_text == "tok tok tok tok tok" and reply.model == "m" and reply.metadata == {"case": "plain"}
    assert reply.status == "incomplete" and reply.incomplete_details.reason == "max_output_tokens"  # type: ignore[union-attr]
    assert reply.usage is not None and reply.usage.output_tokens == 5 and reply.usage.input_tokens > 0
    assert float(raw.headers["x-ttc-cost-usd"]) == pytest.approx(reply.model_extra["ttc"]["cost_usd"])
    assert sent_bodies(fake_upstream)[-1]["messages"][0] == {"role": "system", "content": "Be brief."}
    events = list(client.responses.create(model="m", input=[{"role": "user", "content": "hi"}], max_output_tokens=3, stream=True))
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") == 3
    assert [event.sequence_number for event in events] == list(range(len(events)))
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == "tok tok tok" and final.usage.output_tokens == 3
    with client.responses.stream(model="m", input="hi", max_output_tokens=2) as stream:
        helper = stream.get_final_response()
    assert helper.output_text == "tok tok"
    charged = sum((u.input_tokens * 1.0 + u.output_tokens * 2.0) / 1e6 for u in (reply.usage, final.usage, helper.usage))  # type: ignore[union-attr]
    assert spent(gw) == pytest.approx(charged, abs=1e-6)


def test_a_function_calling_round_trip(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path) -> None:
    gw = start_gateway(responses_config(fake_upstream.url, tmp_path, {"path": str(tmp_path / "l.db")}))
    client = gw.client()
    asked = client.responses.create(model="tool", input="Look up x.", tools=TOOLS, tool_choice="auto")
    (call,) = [item for item in asked.output if item.type == "function_call"]
    assert call.name == "lookup" and call.arguments == '{"x": 1}'
    with client.responses.stream(model="tool", input="Look up x.", tools=TOOLS) as stream:
        streamed = stream.get_final_response()
    assert [item.type for item in streamed.output] == ["function_call"] and streamed.output[0].arguments == '{"x": 1}'  # type: ignore[union-attr]
    answered = client.responses.create(model="tool", max_output_tokens=3, input=[
        {"role": "user", "content": "Look up x."},
        {"type": "function_call", "call_id": call.call_id, "name": "lookup", "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "x is 42"},
    ])
    assert answered.output_text == "tok tok tok"
    last = sent_bodies(fake_upstream)[-1]["messages"]
    assert last[1]["tool_calls"][0] == {"id": call.call_id, "type": "function", "function": {"name": "lookup", "arguments": call.arguments}}
    assert last[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "x is 42"}


def test_structured_output_and_a_strategy(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path) -> None:
    gw = start_gateway(responses_config(fake_upstream.url, tmp_path, {"path": str(tmp_path / "l.db")}))
    client = gw.client()
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    shaped = client.responses.create(model="m", input="answer", text={"format": {"type": "json_schema", "name": "a", "schema": schema}})
    assert shaped.output_text == '{"answer":"tok"}'
    assert sent_bodies(fake_upstream)[-1]["response_format"] == {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}
    raw = client.responses.with_raw_response.create(model="m", input="hi", max_output_tokens=2,
                                                    extra_body={"ttc": {"strategy": "best_of_n", "n": 3}})
    assert raw.headers["x-ttc-strategy"] == "best_of_n" and len(raw.parse().model_extra["ttc"]["calls"]) == 3


def test_errors_and_unstored_responses(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path) -> None:
    gw = start_gateway(responses_config(fake_upstream.url, tmp_path, {"path": str(tmp_path / "l.db")}, limit=0.00002))
    client = gw.client()
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="m", input="x", previous_response_id="resp_123")
    assert info.value.body["param"] == "previous_response_id" and info.value.body["code"] == "previous_response_not_found"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_123")
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="nope", input="x")
    with pytest.raises(openai.BadRequestError) as bad:
        client.responses.create(model="m", input=[{"role": "robot", "content": "x"}])  # type: ignore[list-item]
    assert bad.value.body["param"].startswith("input")  # type: ignore[index]
    with pytest.raises(openai.RateLimitError) as quota:
        openai.OpenAI(base_url=gw.url + "/v1", api_key=client.api_key).responses.create(model="m", input="x", max_output_tokens=64)
    assert quota.value.body["code"] == "insufficient_quota"  # type: ignore[index]
    assert 'ttc_requests_total{model="m",status="429",tenant="tenant-a"} 1.0' in httpx.get(f"{gw.url}/metrics").text  # no retry


def test_unsupported_endpoints_name_the_supported_ones(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway],
                                                       tmp_path: Path) -> None:
    gw = start_gateway(responses_config(fake_upstream.url, tmp_path, {"path": str(tmp_path / "l.db")}))
    for path in ("/v1/completions", "/v1/audio/speech", "/v1/images/generations", "/v1/files"):
        response = httpx.post(f"{gw.url}{path}", headers={"authorization": "Bearer x"}, json={})
        assert response.status_code == 404, path
        message = response.json()["error"]["message"]
        assert all(endpoint in message for endpoint in ("POST /v1/chat/completions", "POST /v1/responses", "POST /v1/messages"))
    with pytest.raises(openai.NotFoundError):
        gw.client().completions.create(model="m", prompt="legacy")
