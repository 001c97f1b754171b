"""Budgets, limits and the admin API through real HTTP, on both ledger backends."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Callable

import httpx
import openai
import pytest

from gateway.auth import hash_key
from testkit.servers import ThreadedServer
from tests.gateway.conftest import ADMIN_KEY, OTHER_KEY, TENANT_KEY, RunningGateway, base_config, fake_model

MESSAGES = [{"role": "user", "content": "one two three four five"}]  # fake upstream: 8 prompt tokens
PROMPT_TOKENS = 8


def budget_config(upstream: str, tmp_path: Path, ledger: dict[str, Any], limit: float, **tenant: Any) -> dict[str, Any]:
    config = base_config(upstream, tmp_path, ledger=ledger)
    config["models"] = [
        fake_model("m", upstream, "m", price={"input_per_1m": 1.0, "output_per_1m": 10.0}),
        fake_model("drip", upstream, "drip-30", price={"input_per_1m": 1.0, "output_per_1m": 10.0}),
        fake_model("inflate", upstream, "inflate", price={"input_per_1m": 100.0, "output_per_1m": 1.0}),
    ]
    config["tenants"][0].update({"allowed_models": ["*"], "budgets": [{"window": "day", "limit_usd": limit}], **tenant})
    return config


def usage(gw: RunningGateway, tenant: str = "tenant-a", key: str = ADMIN_KEY) -> httpx.Response:
    return httpx.get(f"{gw.url}/v1/tenants/{tenant}/usage", headers={"authorization": f"Bearer {key}"})


def cost(completion: int, prompt: int = PROMPT_TOKENS) -> float:
    return (prompt * 1.0 + completion * 10.0) / 1e6


def test_budget_exhaustion_is_429_insufficient_quota(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway],
                                                     tmp_path: Path, ledger_section: dict[str, Any]) -> None:
    one = cost(10)
    gw = start_gateway(budget_config(fake_upstream.url, tmp_path, ledger_section, limit=round(3.5 * one, 6)))
    client = gw.client()
    for _ in range(3):
        client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=10)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=10)
    error = info.value
    assert error.status_code == 429
    assert error.response.headers["x-should-retry"] == "false"
    body = error.response.json()["error"]
    assert body["type"] == "insufficient_quota" and body["code"] == "insufficient_quota"
    assert "day" in body["message"] and "remaining" in body["message"]
    # a smaller request that fits still goes through
    assert client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=1).choices
    report = usage(gw).json()
    assert report["windows"][0]["spent_usd"] <= report["windows"][0]["limit_usd"]
    assert report["requests"] == 4


def test_per_request_cap(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path,
                         ledger_section: dict[str, Any]) -> None:
    gw = start_gateway(budget_config(fake_upstream.url, tmp_path, ledger_section, limit=1.0, max_cost_per_request_usd=cost(20)))
    assert gw.client().chat.completions.create(model="m", messages=MESSAGES, max_tokens=10).choices
    with pytest.raises(openai.RateLimitError) as info:
        gw.client().chat.completions.create(model="m", messages=MESSAGES, max_tokens=60)
    assert "per-request" in info.value.response.json()["error"]["message"]


def test_streamed_request_is_charged_its_real_cost(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway],
                                                   tmp_path: Path, ledger_section: dict[str, Any]) -> None:
    gw = start_gateway(budget_config(fake_upstream.url, tmp_path, ledger_section, limit=1.0))
    chunks = list(gw.client().chat.completions.create(model="m", messages=MESSAGES, max_tokens=7, stream=True))
    assert chunks[-1].model_extra["ttc"]["cost_usd"] == pytest.approx(cost(7))
    report = usage(gw).json()["windows"][0]
    assert report["spent_usd"] == pytest.approx(cost(7), abs=1e-6)
    assert report["reserved_usd"] == 0


def test_client_disconnect_mid_stream_charges_what_was_generated(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway],
                                                                  tmp_path: Path, ledger_section: dict[str, Any]) -> None:
    gw = start_gateway(budget_config(fake_upstream.url, tmp_path, ledger_section, limit=1.0))

    async def read_a_few_then_leave() -> int:
        received = 0
        async with httpx.AsyncClient(timeout=30) as client:
            async with client.stream("POST", gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {TENANT_KEY}"},
                                     json={"model": "drip", "messages": MESSAGES, "max_tokens": 60, "stream": True}) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: ") and '"content":"' in line:
                        received += 1
                    if received >= 5:
                        break  # leaving the block closes the connection mid-stream
        return received

    assert asyncio.run(read_a_few_then_leave()) == 5
    report: dict[str, Any] = {}
    for _ in range(100):  # settlement happens when the server notices the disconnect
        report = usage(gw).json()["windows"][0]
        if report["reserved_usd"] == 0 and report["spent_usd"] > 0:
            break
        asyncio.run(asyncio.sleep(0.1))
    assert report["reserved_usd"] == 0
    assert cost(4) <= report["spent_usd"] + 1e-9  # at least the tokens the client saw
    assert report["spent_usd"] < cost(60)  # not the full reservation


def test_upstream_reporting_more_than_reserved_is_charged_in_full(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway],
                                                                   tmp_path: Path, ledger_section: dict[str, Any],
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    gw = start_gateway(budget_config(fake_upstream.url, tmp_path, ledger_section, limit=1.0))
    with caplog.at_level(logging.WARNING):
        raw = gw.client().chat.completions.with_raw_response.create(model="inflate", messages=MESSAGES, max_tokens=2)
    charged = float(raw.headers["x-ttc-cost-usd"])
    assert raw.parse().usage.prompt_tokens == 3 * PROMPT_TOKENS
    assert charged == pytest.approx((3 * PROMPT_TOKENS * 100.0 + 2 * 1.0) / 1e6)
    assert usage(gw).json()["windows"][0]["spent_usd"] == pytest.approx(charged, abs=1e-6)
    assert any("overage" in record.getMessage() for record in caplog.records)


def test_usage_endpoint_shape_and_access(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path,
                                         ledger_section: dict[str, Any]) -> None:
    gw = start_gateway(budget_config(fake_upstream.url, tmp_path, ledger_section, limit=2.5))
    gw.client().chat.completions.create(model="m", messages=MESSAGES, max_tokens=3)
    own = usage(gw, key=TENANT_KEY)
    assert own.status_code == 200
    report = own.json()
    assert set(report) >= {"tenant", "windows", "requests"}
    assert report["tenant"] == "tenant-a" and report["requests"] == 1
    window = report["windows"][0]
    assert set(window) >= {"window", "limit_usd", "spent_usd", "reserved_usd", "remaining_usd"}
    assert window["spent_usd"] == round(cost(3), 6)
    assert window["remaining_usd"] == round(2.5 - cost(3), 6)
    assert usage(gw, key=ADMIN_KEY).json()["windows"] == report["windows"]
    # another tenant's key: 404, as if the tenant did not exist
    other = usage(gw, key=OTHER_KEY)
    assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"
    assert usage(gw, tenant="ghost").status_code == 404
    assert usage(gw, key="nope").status_code == 401


def test_budget_change_at_run_time_reaches_every_replica(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway],
                                                          tmp_path: Path, ledger_section: dict[str, Any]) -> None:
    config = budget_config(fake_upstream.url, tmp_path, ledger_section, limit=1.0)
    first, second = start_gateway(config), start_gateway(config)
    put = httpx.put(f"{first.url}/v1/tenants/tenant-a/budget", headers={"authorization": f"Bearer {ADMIN_KEY}"},
                    json={"budgets": [{"window": "day", "limit_usd": 0.00001}], "max_cost_per_request_usd": 0.5})
    assert put.status_code == 200, put.text
    assert put.json()["windows"][0]["limit_usd"] == 0.00001
    assert usage(second).json()["windows"][0]["limit_usd"] == 0.00001
    with pytest.raises(openai.RateLimitError):
        second.client().chat.completions.create(model="m", messages=MESSAGES, max_tokens=10)
    # tenants may not change budgets; bad bodies are 400
    denied = httpx.put(f"{first.url}/v1/tenants/tenant-a/budget", headers={"authorization": f"Bearer {TENANT_KEY}"},
                       json={"budgets": [{"window": "day", "limit_usd": 100}]})
    assert denied.status_code == 403
    bad = httpx.put(f"{first.url}/v1/tenants/tenant-a/budget", headers={"authorization": f"Bearer {ADMIN_KEY}"},
                    json={"budgets": [{"window": "decade", "limit_usd": 1}]})
    assert bad.status_code == 400


def test_rate_limit_rpm_gives_retry_after(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path,
                                          ledger_section: dict[str, Any]) -> None:
    gw = start_gateway(budget_config(fake_upstream.url, tmp_path, ledger_section, limit=1.0, rate_limits={"rpm": 3}))
    for _ in range(3):
        gw.client().chat.completions.create(model="m", messages=MESSAGES, max_tokens=1)
    with pytest.raises(openai.RateLimitError) as info:
        gw.client().chat.completions.create(model="m", messages=MESSAGES, max_tokens=1)
    assert info.value.response.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(info.value.response.headers["retry-after"]) >= 1


def test_per_key_budgets(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path,
                         ledger_section: dict[str, Any]) -> None:
    config = budget_config(fake_upstream.url, tmp_path, ledger_section, limit=1.0)
    config["tenants"][0]["api_keys"] = [{"hash": hash_key("sk-small"), "budgets": [{"window": "day", "limit_usd": round(1.5 * cost(10), 6)}]}]
    gw = start_gateway(config)
    small = gw.client(key="sk-small")
    small.chat.completions.create(model="m", messages=MESSAGES, max_tokens=10)
    with pytest.raises(openai.RateLimitError) as info:
        small.chat.completions.create(model="m", messages=MESSAGES, max_tokens=10)
    assert "key" in info.value.response.json()["error"]["message"].lower()
    # the tenant's other key is unaffected
    assert gw.client().chat.completions.create(model="m", messages=MESSAGES, max_tokens=10).choices
