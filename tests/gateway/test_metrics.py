"""The Prometheus metrics that dashboards rely on move with real traffic."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Callable

import httpx
import openai
import pytest

from testkit.servers import ThreadedServer
from tests.gateway.conftest import RunningGateway, base_config, fake_model


def sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_tokens_cost_and_errors(gateway: RunningGateway) -> None:
    client = gateway.client()
    before = httpx.get(gateway.url + "/metrics").text
    response = client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "a b c"}], max_tokens=4)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    after = httpx.get(gateway.url + "/metrics").text
    assert httpx.get(gateway.url + "/metrics").headers["content-type"].startswith("text/plain")

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("ttc_requests_total", tenant="tenant-a", model="fast", status="200") == 1
    assert delta("ttc_tokens_total", tenant="tenant-a", model="fast", kind="completion") == 4
    assert delta("ttc_tokens_total", tenant="tenant-a", model="fast", kind="prompt") == response.usage.prompt_tokens
    assert delta("ttc_cost_usd_total", tenant="tenant-a", model="fast") == pytest.approx(response.model_extra["ttc"]["cost_usd"])
    assert delta("ttc_request_duration_seconds_count", tenant="tenant-a", model="fast") == 1
    runtime = gateway.app.state.runtime
    asyncio.run_coroutine_threadsafe(runtime.refresh_budget_gauges(), gateway.server.loop).result(10)
    gauges = httpx.get(gateway.url + "/metrics").text
    assert sample(gauges, "ttc_budget_remaining_usd", tenant="tenant-a", window="day") == pytest.approx(10.0 - response.model_extra["ttc"]["cost_usd"], abs=1e-6)


def test_upstream_errors_are_counted_by_kind(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path) -> None:
    config = base_config(fake_upstream.url, tmp_path)
    config["models"].append(fake_model("broken", fake_upstream.url, "error-500", max_retries=1))
    config["tenants"][0]["allowed_models"] = ["*"]
    gw = start_gateway(config)
    with pytest.raises(openai.APIStatusError):
        gw.client().chat.completions.create(model="broken", messages=[{"role": "user", "content": "x"}], max_tokens=1)
    text = httpx.get(gw.url + "/metrics").text
    assert sample(text, "ttc_upstream_errors_total", model="broken", kind="server_error") == 2  # first try and one retry
    assert sample(text, "ttc_requests_total", tenant="tenant-a", model="broken", status="502") == 1
