"""Ledger throughput: reserve+settle pairs per second, and Redis round trips per request.

    python -m bench.gateway.ledger [--pairs 4000] [--concurrency 1 16 64]

Starts its own redis-server on a free port (no persistence, like the tests), and an SQLite
ledger in a temporary directory. Redis is measured twice, side by side: with the ledger's
default client for the per-request scripts (the lean pipelined RESP client, gateway/ledger/resp.py)
and with redis-py for everything, as before that client existed. `cpu µs/req` is this process's
CPU time (the client side: packing, parsing, event loop) per request.

Round trips are counted on the client, as replies read by redis-py connections plus calls sent by
the lean client (one reply = one round trip, including connection handshakes and any EVALSHA ->
EVAL fallback); the script calls the server executed (INFO commandstats: evalsha + eval) are
shown beside them as a cross-check.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import redis.asyncio.connection as redis_connection

from contracts.environment import apply_environment_defaults
from gateway.ledger import (
    BudgetScope,
    Ledger,
    LedgerSettings,
    RedisLedger,
    SqliteLedger,
    WindowLimit,
    resp,
)
from gateway.ledger.redis_ledger import make_client
from testkit.redis_server import RedisServer

SCOPE = BudgetScope(
    tenant_id="bench",
    windows=(WindowLimit("day", 1e9), WindowLimit("month", 1e9)),
    max_cost_per_request_usd=10.0,
)


def script_calls(srv: RedisServer) -> int:
    # Commands run inside a script are counted too by INFO, so only count the script calls.
    total = 0
    for line in srv.command("INFO", "commandstats").splitlines():
        if line.startswith(("cmdstat_evalsha:", "cmdstat_eval:")):
            total += int(line.split("calls=", 1)[1].split(",", 1)[0])
    return total


class ReplyCounter:
    """Counts replies read by every redis-py asyncio connection in this process."""

    def __init__(self) -> None:
        self.count = 0
        original = redis_connection.AbstractConnection.read_response
        counter = self

        async def read_response(self: Any, *args: Any, **kwargs: Any) -> Any:
            counter.count += 1
            return await original(self, *args, **kwargs)

        redis_connection.AbstractConnection.read_response = read_response  # type: ignore[method-assign]

        lean_round_trip = resp.LeanRedis._round_trip

        async def round_trip(self: Any, *args: Any, **kwargs: Any) -> Any:
            counter.count += 1
            return await lean_round_trip(self, *args, **kwargs)

        resp.LeanRedis._round_trip = round_trip  # type: ignore[method-assign]


async def run(ledger: Ledger, pairs: int, concurrency: int, *, rate_limits: bool) -> tuple[float, float, list[float]]:
    todo = iter(range(pairs))
    latencies: list[float] = []

    async def worker() -> None:
        for _ in todo:
            t0 = time.perf_counter()
            if rate_limits:
                await ledger.admit_request("bench", rpm=10**9, tpm=10**12, estimated_tokens=500)
            hold = await ledger.reserve(SCOPE, 0.0042)
            await ledger.settle(hold, 0.0031)
            latencies.append(time.perf_counter() - t0)

    t0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu_us = (time.process_time() - cpu0) / pairs * 1e6
    return pairs / (time.perf_counter() - t0), cpu_us, latencies


def pct(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100)[int(q) - 1] * 1000 if len(xs) > 1 else xs[0] * 1000


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=4000)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    args = ap.parse_args()

    replies = ReplyCounter()
    rows: list[tuple[str, int, float, float, float, float, str, str]] = []
    with RedisServer() as srv, tempfile.TemporaryDirectory() as tmp:
        redis_settings = LedgerSettings(redis_url=srv.url, key_prefix="bench")
        backends: list[tuple[str, Ledger, RedisServer | None]] = [
            ("redis", RedisLedger(redis_settings), srv),
            # Passing a client keeps every call on redis-py: the ledger before the lean client.
            ("redis (redis-py)", RedisLedger(redis_settings, client=make_client(redis_settings)), srv),
            ("sqlite", SqliteLedger(LedgerSettings(path=str(Path(tmp) / "bench.db"))), None),
        ]
        for name, ledger, server in backends:
            await ledger.ping()
            await run(ledger, 200, 4, rate_limits=False)  # warm up: connections, script cache
            for rl in (False, True):
                for c in args.concurrency:
                    scripts_before = script_calls(server) if server else 0
                    replies_before = replies.count
                    rate, cpu_us, lat = await run(ledger, args.pairs, c, rate_limits=rl)
                    trips = f"{(replies.count - replies_before) / args.pairs:.2f}" if server else "-"
                    scripts = f"{(script_calls(server) - scripts_before) / args.pairs:.2f}" if server else "-"
                    label = f"{name}{' +rpm/tpm' if rl else ''}"
                    rows.append((label, c, rate, cpu_us, pct(lat, 50), pct(lat, 99), trips, scripts))
            await ledger.close()

    print(f"ledger bench: {args.pairs} requests per row; one request = "
          "[admit_request +] reserve + settle; latency is per request")
    print(f"{'backend':<27}{'conc':>5}{'req/s':>10}{'cpu µs/req':>12}{'p50 ms':>9}{'p99 ms':>9}{'trips/req':>11}{'scripts/req':>13}")
    for label, c, rate, cpu_us, p50, p99, trips, scripts in rows:
        print(f"{label:<27}{c:>5}{rate:>10.0f}{cpu_us:>12.0f}{p50:>9.2f}{p99:>9.2f}{trips:>11}{scripts:>13}")


if __name__ == "__main__":
    apply_environment_defaults()
    asyncio.run(main())
