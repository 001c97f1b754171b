"""Ledger-level proofs with several OS processes: no overspend, exact success count, crash recovery."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.ledger import BudgetScope, LedgerSettings, WindowLimit, make_ledger
from testkit.redis_server import RedisServer

from .workers import admit_many, hammer

pytestmark = pytest.mark.slow

PROCESSES = 4
# A deliberately awkward price: float accumulation of 0.0123 would drift; micro-dollars do not.
COST = 0.0123
LIMIT = round(50 * COST + 0.5 * COST, 6)  # room for 50.5 requests -> exactly 50 fit


@pytest.fixture(params=["sqlite", "redis"])
def shared_settings(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerSettings:
    if request.param == "sqlite":
        return LedgerSettings(path=str(tmp_path / "shared.db"))
    srv: RedisServer = request.getfixturevalue("redis_server")
    return LedgerSettings(redis_url=srv.url, key_prefix=f"mp{time.time_ns()}", redis_socket_timeout_s=15.0)


async def test_processes_share_one_budget(shared_settings: LedgerSettings) -> None:
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    spec = {
        "tenant": "acme",
        "windows": [["day", LIMIT], ["month", 100.0]],
        "amount": COST,
        "attempts": 100,  # 400 in total against room for 50
        "concurrency": 16,
    }
    procs = [
        ctx.Process(target=hammer, args=(shared_settings.model_dump_json(), spec, start, results))
        for _ in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    start.set()
    outcomes = [results.get(timeout=240) for _ in procs]
    assert all(isinstance(o, tuple) for o in outcomes), outcomes
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0

    successes = sum(o[0] for o in outcomes)
    assert sum(o[0] + o[1] for o in outcomes) == 400
    assert successes == int(LIMIT // COST) == 50

    ledger = make_ledger(shared_settings)
    try:
        usage = await ledger.usage(
            BudgetScope("acme", (WindowLimit("day", LIMIT), WindowLimit("month", 100.0)))
        )
    finally:
        await ledger.close()
    day = usage.windows[0]
    assert day.spent_usd <= LIMIT
    assert day.spent_usd == pytest.approx(round(50 * COST, 6), abs=1e-9)
    assert day.spent_usd == pytest.approx(sum(o[2] for o in outcomes), abs=1e-6)
    assert day.reserved_usd == 0.0
    assert usage.requests == 50


@pytest.mark.parametrize(("rpm", "tpm", "expected"), [(20, None, 20), (None, 1000, 14), (30, 700, 10)])
def test_rate_limits_hold_across_processes(
    shared_settings: LedgerSettings, rpm: int | None, tpm: int | None, expected: int
) -> None:
    """Two processes, 25 attempts each, of 70 estimated tokens: the limit holds in total."""
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    spec = {"tenant": "rl", "rpm": rpm, "tpm": tpm, "tokens": 70, "attempts": 25, "now": time.time()}
    procs = [
        ctx.Process(target=admit_many, args=(shared_settings.model_dump_json(), spec, start, results))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    start.set()
    admitted = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert all(isinstance(a, int) for a in admitted), admitted
    assert sum(admitted) == expected  # min(rpm, floor(tpm / 70))


async def test_killed_process_hold_expires(shared_settings: LedgerSettings) -> None:
    """A gateway SIGKILLed mid-request leaves a hold; after its TTL it is charged its amount (the
    upstream may have billed the call), and no more: the rest of the window is free again."""
    spec = {"tenant": "crash", "windows": [["day", 1.0]], "amount": 0.8, "ttl_s": 2.0}
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.ledger.workers", shared_settings.model_dump_json(), json.dumps(spec)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = child.stdout.readline() if child.stdout else ""
        assert line, "worker did not reserve"
        expires_at = json.loads(line)["expires_at"]
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -9

    scope = BudgetScope("crash", (WindowLimit("day", 1.0),))
    ledger = make_ledger(shared_settings)
    try:
        usage = await ledger.usage(scope)
        if time.time() < expires_at - 0.2:  # still within the TTL: the dead process's hold counts
            assert usage.windows[0].reserved_usd == 0.8
        while time.time() <= expires_at + 0.05:
            time.sleep(0.1)
        usage = await ledger.usage(scope)
        assert (usage.windows[0].reserved_usd, usage.windows[0].spent_usd, usage.windows[0].remaining_usd) == (0.0, 0.8, 0.2)
        hold = await ledger.reserve(scope, 0.2)
        assert await ledger.settle(hold, 0.2) == 0.2
    finally:
        await ledger.close()
