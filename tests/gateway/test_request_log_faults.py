"""Nothing lost: the request log under load over two gateways, through a PostgreSQL outage, across
a restart, and (only when the disk is full) dropping rows it counts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from testkit.servers import ThreadedServer, free_port
from testkit.tcp_proxy import TcpProxy
from tests.gateway.conftest import ADMIN_KEY, TENANT_KEY, RunningGateway, base_config
from tests.gateway.requestlog_support import FAST, rows

MESSAGES = [{"role": "user", "content": "one two three"}]


def config_for(upstream: str, tmp_path: Path, **section: Any) -> dict[str, Any]:
    config = base_config(upstream, tmp_path, request_log={"spool_path": str(tmp_path / "requests.spool"), **FAST, **section})
    config["tenants"][0]["budgets"] = []
    return config


def count(url: str) -> tuple[int, int]:
    """Rows and distinct request ids, straight from PostgreSQL."""
    with psycopg.connect(url) as conn:
        found = conn.execute("SELECT count(*), count(DISTINCT request_id) FROM ttc_request_log").fetchone()
    assert found is not None
    return int(found[0]), int(found[1])


def wait_for_rows(url: str, expected: int, timeout_s: float = 60.0) -> tuple[int, int]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = count(url)
        if found[0] >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


async def burst(gateways: list[RunningGateway], total: int) -> list[str]:
    clients = [gw.async_client(TENANT_KEY, timeout=60) for gw in gateways]
    limit = asyncio.Semaphore(100)

    async def one(i: int) -> str:
        async with limit:
            raw = await clients[i % len(clients)].chat.completions.with_raw_response.create(
                model="fast", messages=MESSAGES, max_tokens=4)
            return raw.headers["x-request-id"]

    return list(await asyncio.gather(*(one(i) for i in range(total))))


def test_400_concurrent_requests_over_two_gateways_give_400_rows(
        fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path, postgres_url: str) -> None:
    gateways = [start_gateway(config_for(fake_upstream.url, tmp_path / f"gw{i}", postgres_url=postgres_url)) for i in range(2)]
    ids = asyncio.run(burst(gateways, 400))
    assert len(set(ids)) == 400
    assert wait_for_rows(postgres_url, 400) == (400, 400)
    assert {r["request_id"] for r in rows(gateways[0].url, ADMIN_KEY)} == set(ids)


def test_postgres_outage_fails_no_request_and_loses_no_row(
        fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path, postgres_url: str) -> None:
    target = conninfo_to_dict(postgres_url)
    proxy = TcpProxy(str(target.get("host") or "127.0.0.1"), int(target.get("port") or 5432)).start()
    via_proxy = make_conninfo(postgres_url, host="127.0.0.1", port=str(proxy.port))
    gw = start_gateway(config_for(fake_upstream.url, tmp_path, postgres_url=via_proxy, store_timeout_s=2))
    sent = asyncio.run(burst([gw], 50))
    assert wait_for_rows(postgres_url, 50) == (50, 50)

    proxy.cut()  # PostgreSQL is gone, as far as the gateway can tell
    try:
        sent += asyncio.run(burst([gw], 100))  # every one answered (burst raises otherwise)
        outage = get_status(gw, "/v1/requests")
        assert outage == 503  # reads say so; writes wait in the spool
        assert (tmp_path / "requests.spool").exists() or any(tmp_path.glob("requests.spool.replay-*"))
    finally:
        proxy.start()
    assert wait_for_rows(postgres_url, 150) == (150, 150)
    assert {r["request_id"] for r in rows(gw.url, ADMIN_KEY)} == set(sent)
    deadline = time.monotonic() + 10
    while any(tmp_path.glob("requests.spool*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    spooled = [p for p in tmp_path.glob("requests.spool*") if p.stat().st_size > 0]
    assert not spooled, spooled  # drained, and the claimed files deleted


def test_spool_is_replayed_by_the_next_process(
        fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path, postgres_url: str) -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"  # nothing listens there
    first = start_gateway(config_for(fake_upstream.url, tmp_path, postgres_url=dead))
    sent = asyncio.run(burst([first], 20))
    first.server.__exit__(None, None, None)  # shutdown flushes the queue into the spool
    second = start_gateway(config_for(fake_upstream.url, tmp_path, postgres_url=postgres_url))
    assert wait_for_rows(postgres_url, 20) == (20, 20)
    assert {r["request_id"] for r in rows(second.url, ADMIN_KEY)} == set(sent)


def test_rows_are_dropped_and_counted_only_when_queue_and_spool_are_full(
        fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path) -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    gw = start_gateway(config_for(fake_upstream.url, tmp_path, postgres_url=dead, queue_size=1, spool_max_bytes=2048))
    asyncio.run(burst([gw], 40))  # every request answered, though the log cannot keep them all
    metrics = httpx.get(gw.url + "/metrics", timeout=30).text
    dropped = [line for line in metrics.splitlines() if line.startswith("ttc_request_log_dropped_total")]
    assert dropped and float(dropped[0].split()[-1]) > 0, dropped
    assert (tmp_path / "requests.spool").stat().st_size <= 2048


def get_status(gw: RunningGateway, path: str) -> int:
    return httpx.get(gw.url + path, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30).status_code


def test_a_gateway_started_while_postgres_is_down_logs_once_it_is_up(
        fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path, postgres_url: str) -> None:
    target = conninfo_to_dict(postgres_url)
    proxy = TcpProxy(str(target.get("host") or "127.0.0.1"), int(target.get("port") or 5432))  # not listening yet
    gw = start_gateway(config_for(fake_upstream.url, tmp_path, store_timeout_s=2,
                                  postgres_url=make_conninfo(postgres_url, host="127.0.0.1", port=str(proxy.port))))
    sent = asyncio.run(burst([gw], 30))  # answered with the store unreachable
    assert len(set(sent)) == 30
    proxy.start()  # the schema does not exist yet: the writer creates it when the store answers
    try:
        assert wait_for_rows_created(postgres_url, 30) == (30, 30)
    finally:
        proxy.cut()


def wait_for_rows_created(url: str, expected: int, timeout_s: float = 60.0) -> tuple[int, int]:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return wait_for_rows(url, expected, max(0.1, deadline - time.monotonic()))
        except psycopg.errors.UndefinedTable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
