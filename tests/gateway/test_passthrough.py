"""Parameters reach the upstream; retries and fallbacks happen; `n` fans out where needed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import httpx
import openai
import pytest

from testkit.servers import ThreadedServer
from tests.gateway.conftest import TENANT_KEY, RunningGateway, base_config, fake_model

MESSAGES = [{"role": "user", "content": "what is the weather"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}}}]


def requests_for(upstream: ThreadedServer, model: str) -> list[dict[str, Any]]:
    return [r for r in upstream.app.requests if r.get("model") == model]  # type: ignore[attr-defined]


@pytest.fixture
def gw(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path) -> RunningGateway:
    config = base_config(fake_upstream.url, tmp_path)
    config["models"] += [
        fake_model("tooly", fake_upstream.url, "tool"),
        fake_model("tooly-litellm", fake_upstream.url, "tool", litellm_params={"fast_path": "off"}),
        fake_model("flaky", fake_upstream.url, "flaky-2", max_retries=3),
        fake_model("dead", fake_upstream.url, "error-500", max_retries=1, fallbacks=["backup"]),
        fake_model("backup", fake_upstream.url, "backup-model"),
        fake_model("dead-litellm", fake_upstream.url, "error-503", max_retries=0, fallbacks=["backup"], litellm_params={"fast_path": "off"}),
        fake_model("no-n", fake_upstream.url, "no-n-model", supports_n=False),
    ]
    config["tenants"][0]["allowed_models"] = ["*"]
    return start_gateway(config)


@pytest.mark.parametrize("model", ["tooly", "tooly-litellm"])
def test_tools_and_tool_choice_pass_through(gw: RunningGateway, fake_upstream: ThreadedServer, model: str) -> None:
    response = gw.client().chat.completions.create(model=model, messages=MESSAGES, tools=TOOLS, tool_choice="auto",
                                                   max_tokens=8, temperature=0.3, top_p=0.9, seed=7, user="u-1", stop=["\n\n"])
    call = response.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"x": 1}
    sent = requests_for(fake_upstream, "tool")[-1]
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["tool_choice"] == "auto"
    assert sent["temperature"] == 0.3 and sent["top_p"] == 0.9 and sent["seed"] == 7 and sent["user"] == "u-1"
    assert sent["stop"] == ["\n\n"]
    assert sent["max_tokens"] == 8


def test_response_format_passes_through(gw: RunningGateway, fake_upstream: ThreadedServer) -> None:
    response = gw.client().chat.completions.create(model="fast", messages=MESSAGES, response_format={"type": "json_object"}, max_tokens=4)
    assert json.loads(response.choices[0].message.content) == {"answer": "tok"}
    assert requests_for(fake_upstream, "fast")[-1]["response_format"] == {"type": "json_object"}


def test_max_tokens_is_capped_at_the_models_limit(gw: RunningGateway, fake_upstream: ThreadedServer) -> None:
    response = gw.client().chat.completions.create(model="fast", messages=MESSAGES, max_completion_tokens=5000)
    assert requests_for(fake_upstream, "fast")[-1]["max_tokens"] == 64
    assert response.usage.completion_tokens == 64


def test_retries_on_retryable_errors_then_succeeds(gw: RunningGateway, fake_upstream: ThreadedServer) -> None:
    response = gw.client().chat.completions.create(model="flaky", messages=MESSAGES, max_tokens=3)
    assert response.choices[0].message.content == "tok tok tok"
    assert len(requests_for(fake_upstream, "flaky-2")) == 3  # two 503s, then success


@pytest.mark.parametrize(("model", "upstream", "attempts"), [("dead", "error-500", 2), ("dead-litellm", "error-503", 1)])
@pytest.mark.parametrize("stream", [False, True])
def test_fallback_to_next_model_after_retries(gw: RunningGateway, fake_upstream: ThreadedServer, model: str, upstream: str, attempts: int, stream: bool) -> None:
    before = len(requests_for(fake_upstream, upstream))
    raw = gw.client().chat.completions.with_raw_response.create(model=model, messages=MESSAGES, max_tokens=3, stream=stream)
    if stream:
        chunks = list(raw.parse())
        assert {c.model for c in chunks} == {"backup"}
        calls = chunks[-1].model_extra["ttc"]["calls"]
    else:
        body = raw.parse()
        assert body.model == "backup"
        calls = body.model_extra["ttc"]["calls"]
    assert len(requests_for(fake_upstream, upstream)) - before == attempts
    assert [c["model"] for c in calls] == ["backup"]
    # the fallback's price, on the fallback's usage
    assert calls[0]["cost_usd"] == pytest.approx((calls[0]["prompt_tokens"] * 1.0 + 3 * 2.0) / 1e6)


def test_n_fans_out_for_upstreams_without_native_n(gw: RunningGateway, fake_upstream: ThreadedServer) -> None:
    before = len(requests_for(fake_upstream, "no-n-model"))
    response = gw.client().chat.completions.create(model="no-n", messages=MESSAGES, max_tokens=2, n=3)
    assert [c.index for c in response.choices] == [0, 1, 2]
    assert len(requests_for(fake_upstream, "no-n-model")) - before == 3
    assert all("n" not in r for r in requests_for(fake_upstream, "no-n-model")[before:])
    assert response.usage.completion_tokens == 6


def test_native_n_is_forwarded(gw: RunningGateway, fake_upstream: ThreadedServer) -> None:
    response = gw.client().chat.completions.create(model="fast", messages=MESSAGES, max_tokens=2, n=2)
    assert len(response.choices) == 2
    assert requests_for(fake_upstream, "fast")[-1]["n"] == 2


def test_stream_without_include_usage_has_no_usage_chunk_but_carries_cost(gw: RunningGateway) -> None:
    chunks = list(gw.client().chat.completions.create(model="fast", messages=MESSAGES, max_tokens=4, stream=True))
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)  # no empty-choices usage chunk leaked to this client
    final = chunks[-1].model_extra["ttc"]
    assert final["cost_usd"] == pytest.approx(final["calls"][0]["cost_usd"]) and final["cost_usd"] > 0
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "tok tok tok tok"


def test_stream_with_include_usage(gw: RunningGateway) -> None:
    chunks = list(gw.client().chat.completions.create(model="fast", messages=MESSAGES, max_tokens=4, stream=True,
                                                      stream_options={"include_usage": True}))
    assert chunks[-1].usage.completion_tokens == 4
    assert chunks[-1].model_extra["ttc"]["cost_usd"] > 0


def test_stream_without_upstream_usage_counts_the_text(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path) -> None:
    config = base_config(fake_upstream.url, tmp_path)
    config["models"].append(fake_model("nousage", fake_upstream.url, "no-usage"))
    config["tenants"][0]["allowed_models"] = ["*"]
    gw = start_gateway(config)
    chunks = list(gw.client().chat.completions.create(model="nousage", messages=MESSAGES, max_tokens=6, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage.completion_tokens == 6  # "tok tok tok tok tok tok" is 6 tokens
    usage = httpx.get(gw.url + "/v1/tenants/tenant-a/usage", headers={"authorization": f"Bearer {TENANT_KEY}"}).json()
    assert usage["windows"][0]["spent_usd"] == pytest.approx(chunks[-1].model_extra["ttc"]["cost_usd"], abs=1e-6)


def test_models_lists_only_the_tenants_models(gw: RunningGateway) -> None:
    names = {m.id for m in gw.client().models.list()}
    assert "fast" in names and "private" in names  # tenant-a was given "*" in this fixture
    restricted = {m.id for m in openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test-tenant-b").models.list()}
    assert restricted == {"private"}


def test_cost_headers_and_ttc_object(gw: RunningGateway) -> None:
    raw = gw.client().chat.completions.with_raw_response.create(model="fast", messages=MESSAGES, max_tokens=10)
    body = raw.parse()
    ttc = body.model_extra["ttc"]
    assert set(ttc) == {"request_id", "router", "strategy", "calls", "cost_usd"}
    assert ttc["request_id"] == raw.headers["x-request-id"]
    expected = (body.usage.prompt_tokens * 1.0 + 10 * 2.0) / 1e6
    assert float(raw.headers["x-ttc-cost-usd"]) == pytest.approx(expected)
    assert ttc["cost_usd"] == pytest.approx(expected)
    assert float(raw.headers["x-ttc-budget-remaining-usd"]) == pytest.approx(10.0 - expected, abs=1e-6)


def test_request_ids_are_kept_when_safe_and_made_otherwise(gw: RunningGateway) -> None:
    client = gw.client()
    kept = client.chat.completions.with_raw_response.create(model="fast", messages=MESSAGES, max_tokens=2,
                                                            extra_headers={"x-request-id": "client-trace.42:a_b"})
    assert kept.headers["x-request-id"] == "client-trace.42:a_b" == kept.parse().model_extra["ttc"]["request_id"]
    made = client.chat.completions.with_raw_response.create(model="fast", messages=MESSAGES, max_tokens=2,
                                                            extra_headers={"x-request-id": "bad id; <drop>" + "x" * 200})
    assert made.headers["x-request-id"].startswith("req_") and len(made.headers["x-request-id"]) > 20
    streamed = client.chat.completions.with_raw_response.create(model="fast", messages=MESSAGES, max_tokens=2, stream=True)
    assert streamed.headers["x-request-id"].startswith("req_")
    # every response carries one, errors and other endpoints included
    for response in (httpx.get(f"{gw.url}/v1/models"), httpx.get(f"{gw.url}/nope"), httpx.get(f"{gw.url}/health/live")):
        assert response.headers["x-request-id"].startswith("req_")
    distinct = {client.chat.completions.with_raw_response.create(model="fast", messages=MESSAGES, max_tokens=2).headers["x-request-id"]
                for _ in range(3)}
    assert len(distinct) == 3


def test_embeddings_pass_through(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path) -> None:
    config = base_config(fake_upstream.url, tmp_path)
    config["models"].append(fake_model("embedder", fake_upstream.url, "emb", mode="embedding"))
    config["tenants"][0]["allowed_models"] = ["*"]
    gw = start_gateway(config)
    result = gw.client().embeddings.create(model="embedder", input=["one two", "three"])
    assert len(result.data) == 2 and result.data[0].embedding == [0.1, 0.2, 0.3]
    with pytest.raises(openai.BadRequestError):
        gw.client().embeddings.create(model="fast", input="x")  # a chat model cannot embed
    with pytest.raises(openai.BadRequestError):
        gw.client().chat.completions.create(model="embedder", messages=MESSAGES)
