"""End to end with the real local GGUF models, through the OpenAI SDK, on the built-in config."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import httpx
import openai
import pytest

from testkit.servers import ThreadedServer

pytestmark = pytest.mark.slow

PRICES = {"smollm2-135m": (0.05, 0.10), "gemma3-270m": (0.10, 0.20)}


@pytest.fixture(scope="module")
def local_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    home = tmp_path_factory.mktemp("ttc-home")
    saved = {k: os.environ.get(k) for k in ("TTC_CONFIG_DIR", "TTC_DATA_DIR")}
    os.environ["TTC_CONFIG_DIR"] = str(home / "config")
    os.environ["TTC_DATA_DIR"] = str(home / "data")
    try:
        from gateway.app import create_app
        from gateway.defaults import demo_key
        from gateway.runtime import ConfigSource

        with ThreadedServer(create_app(ConfigSource())) as server:
            yield server.url, demo_key()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def client(gateway: tuple[str, str]) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway[0] + "/v1", api_key=gateway[1], max_retries=0, timeout=300)


def usage_of(gateway: tuple[str, str]) -> dict:
    url, key = gateway
    return httpx.get(f"{url}/v1/tenants/demo/usage", headers={"authorization": f"Bearer {key}"}).json()


def expected_cost(model: str, prompt_tokens: int, completion_tokens: int) -> float:
    price_in, price_out = PRICES[model]
    return (prompt_tokens * price_in + completion_tokens * price_out) / 1e6


def test_demo_key_is_stable(local_gateway: tuple[str, str]) -> None:
    from gateway.defaults import demo_key

    assert demo_key() == local_gateway[1]
    assert local_gateway[1].startswith("sk-ttc-")


def test_models_lists_both_local_models(local_gateway: tuple[str, str]) -> None:
    assert {m.id for m in client(local_gateway).models.list()} >= {"smollm2-135m", "gemma3-270m"}


@pytest.mark.parametrize("model", ["smollm2-135m", "gemma3-270m"])
def test_non_streaming_chat_with_real_model(local_gateway: tuple[str, str], model: str) -> None:
    raw = client(local_gateway).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "What is the capital of France?"}], max_tokens=12, temperature=0
    )
    response = raw.parse()
    text = response.choices[0].message.content
    assert text and text.strip()
    assert response.model == model
    assert 0 < response.usage.completion_tokens <= 12
    assert response.usage.prompt_tokens > 5
    cost = expected_cost(model, response.usage.prompt_tokens, response.usage.completion_tokens)
    assert float(raw.headers["x-ttc-cost-usd"]) == pytest.approx(cost, rel=1e-6)
    assert response.model_extra["ttc"]["calls"][0]["model"] == model


def test_streaming_chat_with_real_model_streams_tokens(local_gateway: tuple[str, str]) -> None:
    stream = client(local_gateway).chat.completions.create(
        model="smollm2-135m", messages=[{"role": "user", "content": "Count from one to ten."}], max_tokens=16,
        stream=True, stream_options={"include_usage": True}, temperature=0,
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 3  # true token streaming, not one blob at the end
    final = chunks[-1]
    assert final.usage is not None and 0 < final.usage.completion_tokens <= 16
    ttc = final.model_extra["ttc"]
    assert ttc["cost_usd"] == pytest.approx(expected_cost("smollm2-135m", final.usage.prompt_tokens, final.usage.completion_tokens), rel=1e-6)


def test_concurrent_requests_to_one_local_model_all_complete(local_gateway: tuple[str, str]) -> None:
    async def run() -> list[str]:
        async_client = openai.AsyncOpenAI(base_url=local_gateway[0] + "/v1", api_key=local_gateway[1], max_retries=0, timeout=300)
        results = await asyncio.gather(*(
            async_client.chat.completions.create(model="smollm2-135m", messages=[{"role": "user", "content": f"Say the number {i}."}], max_tokens=6)
            for i in range(3)
        ))
        return [r.choices[0].message.content or "" for r in results]

    texts = asyncio.run(run())
    assert len(texts) == 3 and all(t.strip() for t in texts)
    # health stays responsive: generation runs off the event loop
    assert httpx.get(local_gateway[0] + "/health/live").status_code == 200


def test_spend_is_recorded_in_the_embedded_ledger(local_gateway: tuple[str, str]) -> None:
    before = usage_of(local_gateway)
    raw = client(local_gateway).chat.completions.with_raw_response.create(model="gemma3-270m", messages=[{"role": "user", "content": "Hi"}], max_tokens=5)
    after = usage_of(local_gateway)
    spent = after["windows"][0]["spent_usd"] - before["windows"][0]["spent_usd"]
    assert spent == pytest.approx(float(raw.headers["x-ttc-cost-usd"]), abs=2e-6)
    assert after["windows"][0]["reserved_usd"] == 0
    assert after["requests"] == before["requests"] + 1


def test_auto_routes_on_the_built_in_config(local_gateway: tuple[str, str]) -> None:
    body = client(local_gateway).chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "What is the capital of Peru?"}], max_tokens=8)
    router = body.model_extra["ttc"]["router"]
    assert router["model"] in PRICES and body.model == router["model"]
    assert {c["model"] for c in router["candidates"]} == set(PRICES)
    assert body.choices[0].message.content.strip()


# Every strategy through the gateway on a real local model. Small token caps keep each run to a few
# seconds; scale and refine use a cheap draft on SmolLM2 and the stronger Gemma where it matters.
STRATEGY_SPECS: dict[str, dict[str, object]] = {
    "single": {"strategy": "single"},
    "best_of_n": {"strategy": "best_of_n", "n": 3, "selector": "majority"},
    "refine": {"strategy": "refine", "rounds": 1, "critique_model": "gemma3-270m", "critique_max_tokens": 24},
    "scale": {"strategy": "scale", "max_subproblems": 2, "hard_n": 2, "plan_max_tokens": 48,
              "system1_max_tokens": 24, "strong_model": "gemma3-270m", "difficulty_source": "llm"},
    "adaptive": {"strategy": "adaptive", "n": 4},
}
MATH = [{"role": "user", "content": "Tom has 3 apples and buys 4 more. How many apples does he have?"}]


def window_of(gateway: tuple[str, str]) -> dict:
    return usage_of(gateway)["windows"][0]


def check_calls(calls: list[dict], cost_usd: float) -> None:
    """Every internal call is priced at its model's configured price, and the total is their sum."""
    assert calls
    for call in calls:
        assert call["model"] in PRICES
        assert call["cost_usd"] == pytest.approx(
            expected_cost(call["model"], call["prompt_tokens"], call["completion_tokens"]), rel=1e-6, abs=1e-12)
    assert cost_usd == pytest.approx(sum(c["cost_usd"] for c in calls), rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("name", list(STRATEGY_SPECS))
def test_every_strategy_non_streamed_on_a_local_model(local_gateway: tuple[str, str], name: str) -> None:
    before = window_of(local_gateway)
    raw = client(local_gateway).chat.completions.with_raw_response.create(
        model="smollm2-135m", messages=MATH, max_tokens=24, extra_body={"ttc": STRATEGY_SPECS[name]})
    body = raw.parse()
    ttc = body.model_extra["ttc"]
    assert (ttc["strategy"] or {"name": "single"})["name"] == name
    assert body.choices[0].message.content is not None
    calls = ttc["calls"]
    if name != "single":
        assert len(calls) > 1  # the strategy really made several upstream calls
    assert body.usage.completion_tokens == sum(c["completion_tokens"] for c in calls)
    assert body.usage.prompt_tokens == sum(c["prompt_tokens"] for c in calls)
    cost = float(raw.headers["x-ttc-cost-usd"])
    check_calls(calls, cost)
    after = window_of(local_gateway)
    assert after["spent_usd"] - before["spent_usd"] == pytest.approx(cost, abs=2e-6)
    assert after["reserved_usd"] == 0  # every hold settled or released


@pytest.mark.parametrize("name", list(STRATEGY_SPECS))
def test_every_strategy_streamed_on_a_local_model(local_gateway: tuple[str, str], name: str) -> None:
    before = window_of(local_gateway)
    chunks = list(client(local_gateway).chat.completions.create(
        model="smollm2-135m", messages=MATH, max_tokens=24, stream=True, stream_options={"include_usage": True},
        extra_body={"ttc": STRATEGY_SPECS[name]}))
    final = chunks[-1]
    ttc = final.model_extra["ttc"]
    assert (ttc["strategy"] or {"name": "single"})["name"] == name
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert final.usage.completion_tokens == sum(c["completion_tokens"] for c in ttc["calls"])
    check_calls(ttc["calls"], ttc["cost_usd"])
    after = window_of(local_gateway)
    assert after["spent_usd"] - before["spent_usd"] == pytest.approx(ttc["cost_usd"], abs=2e-6)
    assert after["reserved_usd"] == 0


def test_anthropic_messages_with_a_real_model(local_gateway: tuple[str, str]) -> None:
    import anthropic

    url, key = local_gateway
    client_ = anthropic.Anthropic(base_url=url, api_key=key, max_retries=0, timeout=300)
    before = usage_of(local_gateway)["windows"][0]["spent_usd"]
    reply = client_.messages.create(model="smollm2-135m", max_tokens=12, system="Answer briefly.",
                                    messages=[{"role": "user", "content": "What is the capital of France?"}])
    assert reply.content[0].type == "text" and reply.content[0].text.strip()
    assert reply.stop_reason in ("end_turn", "max_tokens")
    cost = expected_cost("smollm2-135m", reply.usage.input_tokens, reply.usage.output_tokens)
    with client_.messages.stream(model="smollm2-135m", max_tokens=12,
                                 messages=[{"role": "user", "content": "Name a color."}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.strip() and final.content[0].text == text
    cost += expected_cost("smollm2-135m", final.usage.input_tokens, final.usage.output_tokens)
    assert usage_of(local_gateway)["windows"][0]["spent_usd"] - before == pytest.approx(cost, abs=2e-6)


def test_openai_responses_with_a_real_model(local_gateway: tuple[str, str]) -> None:
    before = usage_of(local_gateway)["windows"][0]["spent_usd"]
    reply = client(local_gateway).responses.create(model="gemma3-270m", input="What is the capital of Italy?", max_output_tokens=12)
    assert reply.output_text.strip() and reply.usage is not None
    cost = expected_cost("gemma3-270m", reply.usage.input_tokens, reply.usage.output_tokens)
    with client(local_gateway).responses.stream(model="smollm2-135m", input="Name a fruit.", max_output_tokens=10) as stream:
        final = stream.get_final_response()
    assert final.output_text.strip() and final.usage is not None
    cost += expected_cost("smollm2-135m", final.usage.input_tokens, final.usage.output_tokens)
    assert usage_of(local_gateway)["windows"][0]["spent_usd"] - before == pytest.approx(cost, abs=2e-6)
