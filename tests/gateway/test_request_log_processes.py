"""Nothing lost, the way production loses things: a PostgreSQL server stopped for 10 s while
traffic flows and started again, and two `ttc serve` processes writing one database at once."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import openai
import pytest
import yaml

from testkit.pg_cluster import ClusterUnavailable, PgCluster
from testkit.servers import ProcessServer, ThreadedServer, free_port, ttc_command
from testkit.waiting import wait_for
from tests.gateway.conftest import ADMIN_KEY, TENANT_KEY, RunningGateway
from tests.gateway.requestlog_support import rows
from tests.gateway.test_request_log_faults import MESSAGES, burst, config_for, count, wait_for_rows

pytestmark = pytest.mark.slow

OUTAGE_S = 10.0


@pytest.fixture
def pg_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL server of this test's own, so that stopping it stops no one else's."""
    try:
        cluster = PgCluster().__enter__()
    except ClusterUnavailable as error:
        problem = f"the private PostgreSQL cluster could not start: {error}"
    else:
        problem = None
    if problem is not None:
        pytest.fail(problem, pytrace=False)  # never a skip: the outage test must run
    try:
        yield cluster
    finally:
        cluster.__exit__(None, None, None)


class Traffic:
    """Requests sent without pause from a thread (4 at a time) until `stop()`: every answer's
    `x-request-id`, and every failure."""

    def __init__(self, gw: RunningGateway) -> None:
        self.gw = gw
        self.ids: list[str] = []
        self.failures: list[str] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        client = self.gw.async_client(TENANT_KEY, timeout=30)

        async def worker() -> None:
            while not self._done.is_set():
                try:
                    raw = await client.chat.completions.with_raw_response.create(model="fast", messages=MESSAGES, max_tokens=4)
                    self.ids.append(raw.headers["x-request-id"])
                except openai.OpenAIError as error:
                    self.failures.append(repr(error))
                await asyncio.sleep(0.005)

        await asyncio.gather(*(worker() for _ in range(4)))

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=60)


def test_postgres_stopped_for_10s_mid_run_fails_no_request_and_loses_no_row(
        fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path,
        pg_cluster: PgCluster) -> None:
    gw = start_gateway(config_for(fake_upstream.url, tmp_path, postgres_url=pg_cluster.url, store_timeout_s=2))
    traffic = Traffic(gw).start()
    try:
        wait_for(lambda: bool(traffic.failures) or count(pg_cluster.url)[0] >= 50, 60,
                 "rows reach the store before the outage")
        assert not traffic.failures, traffic.failures[:3]
        pg_cluster.stop()
        stopped = time.monotonic()
        before_outage = len(traffic.ids)
        spooled = False
        while time.monotonic() - stopped < OUTAGE_S:
            spooled = spooled or any(p.stat().st_size > 0 for p in tmp_path.glob("requests.spool*") if p.is_file())
            time.sleep(0.2)
        during_outage = len(traffic.ids) - before_outage
        pg_cluster.start()
        time.sleep(2.0)  # traffic goes on across the restart
    finally:
        traffic.stop()
    assert traffic.failures == [], traffic.failures[:5]  # no request failed, during the outage or after
    assert during_outage > 100 and spooled  # the gateway did serve through a real outage, and spooled its rows
    sent = len(traffic.ids)
    assert len(set(traffic.ids)) == sent
    assert wait_for_rows(pg_cluster.url, sent, timeout_s=120) == (sent, sent)  # after the spool drains: rows == requests
    assert {r["request_id"] for r in rows(gw.url, ADMIN_KEY)} == set(traffic.ids)
    deadline = time.monotonic() + 30
    while any(p.stat().st_size > 0 for p in tmp_path.glob("requests.spool*") if p.is_file()) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [p for p in tmp_path.glob("requests.spool*") if p.is_file() and p.stat().st_size > 0]
    assert not left, left  # drained, claimed files deleted


def test_400_concurrent_requests_over_two_ttc_serve_processes_give_400_rows(
        fake_upstream: ThreadedServer, tmp_path: Path, postgres_url: str) -> None:
    with ExitStack() as stack:
        gateways: list[ProcessServer] = []
        for i in range(2):
            folder = tmp_path / f"gw{i}"  # each process its own ledger and spool; one PostgreSQL database
            folder.mkdir()
            config = folder / "config.yaml"
            config.write_text(yaml.safe_dump(config_for(fake_upstream.url, folder, postgres_url=postgres_url)))
            port = free_port()
            server = ProcessServer(ttc_command("serve", "--config", str(config), "--port", str(port)), port,
                                   health_path="/health/ready", log_path=folder / "gateway.log")
            stack.callback(server.stop)
            gateways.append(server.launch())  # boot in parallel
        for server in gateways:
            server.wait_ready()
        ids = asyncio.run(burst([RunningGateway(server, Path(), None) for server in gateways], 400))  # type: ignore[arg-type]
        assert len(set(ids)) == 400
        assert wait_for_rows(postgres_url, 400) == (400, 400)
        assert {r["request_id"] for r in rows(gateways[1].url, ADMIN_KEY)} == set(ids)
        for server in gateways:
            server.stop()  # SIGTERM: each flushes its queue and closes its store
        assert count(postgres_url) == (400, 400)  # and shutting down wrote nothing twice
