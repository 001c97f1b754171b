"""Request log sustained writes into PostgreSQL: rows/s through the real writer (queue, batches,
store thread) and the largest queue depth it needed, plus bytes per row on disk.

    python -m bench.gateway.request_log [--rows 50000] [--rate 0] [--content]

Offers `--rows` synthetic request records to a `RequestLog` on the event loop, as the gateway's
observe step does, at `--rate` rows/s (0: as fast as the loop can), and times until every row is
in the table. Uses a fresh database on the test server (127.0.0.1:5432, or
TTC_TEST_POSTGRES_URL), dropped afterwards. `--content` logs prompt and response text (an
opted-in tenant); otherwise hashes only, the default."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from gateway.metrics import Metrics
from gateway.pipeline.observe import RequestRecord
from gateway.requestlog.postgres_store import PostgresRequestStore
from gateway.requestlog.settings import RequestLogSettings
from gateway.requestlog.spool import RequestSpool
from gateway.requestlog.writer import RequestLog
from strategies import CallRecord
from testkit.postgres import temporary_database

MESSAGES = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of Italy? Answer in one word, then explain briefly." * 3}]
ROUTER = {"version": "bench-1", "chosen": "small", "candidates": [
    {"model": "small", "predicted_quality": 0.71, "expected_cost_usd": 0.00002},
    {"model": "large", "predicted_quality": 0.86, "expected_cost_usd": 0.00031}]}


def record(i: int, content: bool) -> RequestRecord:
    return RequestRecord(
        request_id=f"req_{uuid.uuid4().hex}", time=time.time(), tenant_id=f"tenant-{i % 20}", key_id="0123456789ab",
        endpoint="/v1/chat/completions", requested_model="auto", served_model="small", status="200", error_code=None,
        router=ROUTER, strategy=None, calls=(CallRecord("small", "sample", 60, 40, 0.0000071),), latency_s=0.42,
        first_byte_s=None, log_content=content, messages=MESSAGES, response_text="Rome. It has been the capital since 1871.")


async def run(url: str, rows: int, rate: float, content: bool, queue_size: int) -> None:
    settings = RequestLogSettings(postgres_url=url, queue_size=queue_size)
    with tempfile.TemporaryDirectory() as tmp:
        log = RequestLog(PostgresRequestStore(url, settings.retention_days), RequestSpool(Path(tmp) / "spool", 1 << 30),
                         settings, Metrics())
        await log.start()
        started = time.perf_counter()
        for i in range(rows):
            log.observe(record(i, content))
            if rate > 0:
                await asyncio.sleep(max(0.0, started + (i + 1) / rate - time.perf_counter()))
            elif i % 200 == 0:
                await asyncio.sleep(0)  # let the writer run, as a busy gateway's loop would
        offered = time.perf_counter() - started
        await log.flush(timeout_s=600)
        elapsed = time.perf_counter() - started
        spilled = log.spool.pending()
        await log.close()
    with psycopg.connect(url) as conn:
        found = conn.execute("SELECT count(*) FROM ttc_request_log").fetchone()
        size = conn.execute("SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
                            "WHERE inhparent = 'ttc_request_log'::regclass").fetchone()
    count = int(found[0]) if found else 0
    total_bytes = int(size[0]) if size and size[0] is not None else 0
    print(f"rows offered {rows} in {offered:.2f}s ({rows / offered:,.0f}/s offered), content={'on' if content else 'off'}")
    print(f"rows in PostgreSQL {count} after {elapsed:.2f}s: {count / elapsed:,.0f} rows/s sustained")
    print(f"max queue depth {log.max_depth} (bound {queue_size}); spooled at end: {spilled}")
    print(f"on disk: {total_bytes / max(count, 1):,.0f} bytes/row (table and indexes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50000)
    parser.add_argument("--rate", type=float, default=0.0, help="rows/s offered; 0 = as fast as possible")
    parser.add_argument("--queue-size", type=int, default=10000)
    parser.add_argument("--content", action="store_true")
    args = parser.parse_args()
    with temporary_database("ttc_bench") as url:
        asyncio.run(run(url, args.rows, args.rate, args.content, args.queue_size))


if __name__ == "__main__":
    main()
