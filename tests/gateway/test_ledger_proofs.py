"""Proofs that budgets hold across processes: concurrency, crashes, Redis outages, shared limits.

The provider here is the fake upstream: it returns exactly the requested max_tokens as
completion tokens, so every request costs the same, exactly known amount.
"""

from __future__ import annotations

import asyncio
import math
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from testkit.redis_server import RedisServer
from testkit.servers import ProcessServer, ThreadedServer, free_port, ttc_command
from tests.gateway.conftest import ADMIN_KEY, TENANT_KEY, base_config, fake_model

pytestmark = pytest.mark.slow

MESSAGES = [{"role": "user", "content": "one two three four five"}]  # the fake upstream counts 8 prompt tokens
MAX_TOKENS = 10
COST = (8 * 1.0 + MAX_TOKENS * 10.0) / 1e6  # 108 micro-dollars per request, exactly


def write_config(tmp_path: Path, upstream: str, ledger: dict[str, Any], limit: float, **tenant: Any) -> Path:
    config = base_config(upstream, tmp_path, ledger=ledger)
    config["models"] = [
        fake_model("m", upstream, "m", price={"input_per_1m": 1.0, "output_per_1m": 10.0}),
        fake_model("slow", upstream, "slow-4000", price={"input_per_1m": 1.0, "output_per_1m": 10.0}, timeout_s=30),
    ]
    config["tenants"][0].update({"allowed_models": ["*"], "budgets": [{"window": "day", "limit_usd": limit}], **tenant})
    path = tmp_path / f"config-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_gateways(stack: ExitStack, config: Path, count: int, tmp_path: Path) -> list[ProcessServer]:
    servers = [
        ProcessServer(ttc_command("serve", "--config", str(config), "--port", str(port)), port, health_path="/health/ready",
                      log_path=tmp_path / f"gw{port}.log")
        for port in (free_port() for _ in range(count))
    ]
    for server in servers:
        stack.callback(server.stop)
        server.launch()  # boot in parallel, then wait for each
    return [server.wait_ready() for server in servers]


def usage(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/v1/tenants/tenant-a/usage", headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=10).json()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


async def fire(urls: list[str], total: int, model: str = "m") -> tuple[int, list[float], dict[int, int]]:
    clients = [openai.AsyncOpenAI(base_url=u + "/v1", api_key=TENANT_KEY, max_retries=0, timeout=60) for u in urls]
    costs: list[float] = []
    statuses: dict[int, int] = {}

    async def one(i: int) -> None:
        client = clients[i % len(clients)]
        try:
            raw = await client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES, max_tokens=MAX_TOKENS)
            costs.append(float(raw.headers["x-ttc-cost-usd"]))
            statuses[200] = statuses.get(200, 0) + 1
        except openai.APIStatusError as error:
            statuses[error.status_code] = statuses.get(error.status_code, 0) + 1

    await asyncio.gather(*(one(i) for i in range(total)))
    for client in clients:
        await client.close()
    return len(costs), costs, statuses


def test_four_processes_400_concurrent_requests_never_overspend(fake_upstream: ThreadedServer, redis_server: RedisServer, tmp_path: Path) -> None:
    limit = round(50.5 * COST, 6)
    affordable = math.floor(limit / COST)
    config = write_config(tmp_path, fake_upstream.url, {"redis_url": redis_server.url, "key_prefix": "proof"}, limit)
    with ExitStack() as stack:
        servers = start_gateways(stack, config, 4, tmp_path)
        successes, costs, statuses = asyncio.run(fire([s.url for s in servers], 400))
        report = usage(servers[0].url)
    spent = report["windows"][0]["spent_usd"]
    assert spent <= limit
    assert successes <= affordable
    assert successes >= 0.9 * affordable, statuses
    assert set(statuses) <= {200, 429}
    assert all(c == pytest.approx(COST) for c in costs)
    assert spent == pytest.approx(sum(costs), abs=1e-9)  # nothing lost, nothing double-counted
    assert report["windows"][0]["reserved_usd"] == 0
    assert report["requests"] == successes


def test_reservation_of_a_killed_gateway_expires(fake_upstream: ThreadedServer, redis_server: RedisServer, tmp_path: Path) -> None:
    ledger = {"redis_url": redis_server.url, "key_prefix": "crash", "reservation_ttl_s": 3}
    config = write_config(tmp_path, fake_upstream.url, ledger, 1.0)
    with ExitStack() as stack:
        doomed, witness = start_gateways(stack, config, 2, tmp_path)
        client = openai.OpenAI(base_url=doomed.url + "/v1", api_key=TENANT_KEY, max_retries=0, timeout=30)
        import threading

        threading.Thread(target=lambda: _swallow(lambda: client.chat.completions.create(model="slow", messages=MESSAGES, max_tokens=MAX_TOKENS)), daemon=True).start()
        deadline = time.monotonic() + 10
        while usage(witness.url)["windows"][0]["reserved_usd"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        held = usage(witness.url)["windows"][0]["reserved_usd"]
        assert held > 0
        doomed.stop(sig=signal.SIGKILL)
        time.sleep(3.5)
        after = usage(witness.url)["windows"][0]
    # Expired unsettled: charged its worst case (the upstream had the call and may bill it), and
    # nothing more is held.
    assert after["reserved_usd"] == 0
    assert after["spent_usd"] == held
    assert after["remaining_usd"] == pytest.approx(1.0 - held, abs=1e-9)


def _swallow(call: Any) -> None:
    try:
        call()
    except Exception:  # the server is killed under it on purpose
        pass


def test_redis_stopped_mid_run_fails_closed_and_recovers(fake_upstream: ThreadedServer, tmp_path: Path) -> None:
    with RedisServer(args=RedisServer.PERSISTENT_ARGS) as redis_srv, ExitStack() as stack:
        config = write_config(tmp_path, fake_upstream.url, {"redis_url": redis_srv.url, "key_prefix": "outage", "redis_socket_timeout_s": 0.5,
                                                            "redis_connect_timeout_s": 0.5}, 1.0)
        (gateway,) = start_gateways(stack, config, 1, tmp_path)
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=TENANT_KEY, max_retries=0, timeout=30)
        for _ in range(3):
            client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=MAX_TOKENS)
        before = usage(gateway.url)["windows"][0]["spent_usd"]
        assert before == pytest.approx(3 * COST)
        upstream_calls = len(fake_upstream.app.requests)  # type: ignore[attr-defined]

        redis_srv.stop()
        for _ in range(5):
            with pytest.raises(openai.APIStatusError) as info:
                client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=MAX_TOKENS)
            assert info.value.status_code == 503
            assert info.value.response.json()["error"]["code"] == "ledger_unavailable"
        assert len(fake_upstream.app.requests) == upstream_calls  # type: ignore[attr-defined]  # no upstream call while down
        assert httpx.get(gateway.url + "/health/ready").status_code == 503

        redis_srv.start()  # same port, same AOF
        assert usage(gateway.url)["windows"][0]["spent_usd"] == pytest.approx(before)
        client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=MAX_TOKENS)
        assert usage(gateway.url)["windows"][0]["spent_usd"] == pytest.approx(before + COST)
        assert httpx.get(gateway.url + "/health/ready").status_code == 200


def test_rpm_and_tpm_hold_across_two_processes(fake_upstream: ThreadedServer, redis_server: RedisServer, tmp_path: Path) -> None:
    rpm_config = write_config(tmp_path, fake_upstream.url, {"redis_url": redis_server.url, "key_prefix": "rpm"}, 1.0, rate_limits={"rpm": 12})
    # TPM: each request is estimated at about 8 prompt + 10 completion tokens; 90 TPM admits 5 (sequential, trued-up to 18 each).
    tpm_config = write_config(tmp_path, fake_upstream.url, {"redis_url": redis_server.url, "key_prefix": "tpm"}, 1.0, rate_limits={"tpm": 90})
    with ExitStack() as stack:
        rpm_servers = start_gateways(stack, rpm_config, 2, tmp_path)
        ok, _, statuses = asyncio.run(fire([s.url for s in rpm_servers], 30))
        assert ok == 12, statuses
        assert statuses.get(429) == 18
        tpm_servers = start_gateways(stack, tpm_config, 2, tmp_path)
        ok_tpm, _, statuses_tpm = asyncio.run(fire([s.url for s in tpm_servers], 20))
    assert 3 <= ok_tpm <= 5, statuses_tpm
    assert statuses_tpm.get(429) == 20 - ok_tpm
