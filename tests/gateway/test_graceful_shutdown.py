"""SIGTERM: stop accepting, finish or settle in-flight streams, leave the ledger consistent."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from testkit.servers import ProcessServer, ThreadedServer, free_port, ttc_command
from tests.gateway.conftest import TENANT_KEY, base_config, fake_model

pytestmark = pytest.mark.slow

MESSAGES = [{"role": "user", "content": "one two three four five"}]  # 8 prompt tokens at the fake upstream


def start(tmp_path: Path, upstream: str, graceful_s: float) -> tuple[ProcessServer, Path]:
    config = base_config(upstream, tmp_path)
    price = {"input_per_1m": 1.0, "output_per_1m": 10.0}
    config["models"] = [fake_model("drip", upstream, "drip-40", price=price),
                        fake_model("slow", upstream, "slow-8000", price=price, timeout_s=30)]
    config["tenants"][0]["allowed_models"] = ["*"]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    server = ProcessServer(ttc_command("serve", "--config", str(path), "--port", str(port), "--graceful-timeout", str(graceful_s)),
                           port, log_path=tmp_path / "serve.log").start()
    return server, Path(config["ledger"]["path"])


def stream_in_background(url: str, max_tokens: int) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {"lines": []}

    def run() -> None:
        try:
            with httpx.stream("POST", url + "/v1/chat/completions", headers={"authorization": f"Bearer {TENANT_KEY}"}, timeout=60,
                              json={"model": "drip", "messages": MESSAGES, "max_tokens": max_tokens, "stream": True}) as response:
                for line in response.iter_lines():
                    if line:
                        result["lines"].append(line)
        except httpx.HTTPError as error:
            result["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 20
    while len(result["lines"]) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    return thread, result


def ledger_totals(db: Path) -> tuple[float, float]:
    """(spent, live reserved) straight from the SQLite file, after the process is gone."""
    import asyncio

    from gateway.ledger import LedgerSettings, SqliteLedger
    from gateway.ledger import BudgetScope, WindowLimit

    async def read() -> tuple[float, float]:
        ledger = SqliteLedger(LedgerSettings(path=str(db)))
        try:
            report = await ledger.usage(BudgetScope("tenant-a", (WindowLimit("day", 10.0),)))
        finally:
            await ledger.close()
        return report.windows[0].spent_usd, report.windows[0].reserved_usd

    return asyncio.run(read())


def test_sigterm_lets_an_in_flight_stream_finish_and_settle(fake_upstream: ThreadedServer, tmp_path: Path) -> None:
    server, db = start(tmp_path, fake_upstream.url, graceful_s=20)
    thread, result = stream_in_background(server.url, max_tokens=40)  # about 1.6 s of streaming
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(httpx.HTTPError):  # no longer accepting new connections
        httpx.get(server.url + "/health/live", timeout=2)
    thread.join(30)
    assert server.process.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean shutdown
    assert "error" not in result, result.get("error")
    assert result["lines"][-1] == "data: [DONE]"
    spent, reserved = ledger_totals(db)
    assert reserved == 0
    assert spent == pytest.approx((8 * 1.0 + 40 * 10.0) / 1e6, abs=1e-6)


def test_sigterm_past_the_grace_period_settles_what_was_generated(fake_upstream: ThreadedServer, tmp_path: Path) -> None:
    server, db = start(tmp_path, fake_upstream.url, graceful_s=1)
    thread, result = stream_in_background(server.url, max_tokens=200)  # 8 s: longer than the grace period
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    thread.join(30)
    server.process.wait(30)
    assert "data: [DONE]" not in result["lines"]
    streamed = sum(1 for line in result["lines"] if '"content":"' in line and '"content":""' not in line)
    spent, reserved = ledger_totals(db)
    assert reserved == 0  # the unused part of the reservation went back
    assert (8 + streamed * 10.0) / 1e6 - 1e-6 <= spent < (8 + 200 * 10.0) / 1e6


def sigterm_while_the_upstream_works(fake_upstream: ThreadedServer, tmp_path: Path, body: dict[str, Any]) -> tuple[float, float]:
    """POST `body` to a gateway with a 1 s grace period, SIGTERM it once the (8 s) upstream call has
    arrived, and return the ledger's (spent, live reserved) after the process is gone."""
    server, db = start(tmp_path, fake_upstream.url, graceful_s=1)
    sent_before = len(fake_upstream.app.requests)  # type: ignore[attr-defined]

    def run() -> None:
        with contextlib.suppress(httpx.HTTPError):  # the server goes away mid-request
            httpx.post(server.url + "/v1/chat/completions", headers={"authorization": f"Bearer {TENANT_KEY}"}, timeout=60,
                       json={"model": "slow", "messages": MESSAGES, **body})

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 20
    while len(fake_upstream.app.requests) == sent_before and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.02)
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    thread.join(30)
    server.process.wait(30)
    return ledger_totals(db)


def test_sigterm_past_the_grace_period_charges_a_strategys_calls_in_flight(fake_upstream: ThreadedServer, tmp_path: Path) -> None:
    spent, reserved = sigterm_while_the_upstream_works(fake_upstream, tmp_path,
                                                       {"max_tokens": 10, "ttc": {"strategy": "best_of_n", "n": 3}})
    assert reserved == 0
    # The upstream was already generating 3 samples of at most 10 tokens: charged at that worst case
    # (the tokenizer margin on the prompt aside), not released as if nothing had been spent.
    assert 3 * 10 * 10.0 / 1e6 < spent <= 3 * (20 * 1.0 + 10 * 10.0) / 1e6


def test_sigterm_past_the_grace_period_charges_a_plain_call_in_flight_its_reservation(fake_upstream: ThreadedServer, tmp_path: Path) -> None:
    spent, reserved = sigterm_while_the_upstream_works(fake_upstream, tmp_path, {"max_tokens": 10})
    assert reserved == 0
    # the upstream already had the request: charged its worst case, 10 output tokens plus the padded prompt
    assert 10 * 10.0 / 1e6 < spent <= (20 * 1.0 + 10 * 10.0) / 1e6
