"""The stores' contract on real stores: retention (PostgreSQL by dropping daily partitions, never a
DELETE), partitions made ahead, idempotent writes, keyset pages."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import psycopg

from gateway.pipeline.observe import RequestRecord
from gateway.requestlog.postgres_store import SCHEMA, TABLE, PostgresRequestStore, day_of, partition_name
from gateway.requestlog.row import row_of
from gateway.requestlog.sqlite_store import SqliteRequestStore
from gateway.requestlog.store import Query
from strategies import CallRecord

DAY = 86400.0


def record(request_id: str, at: float, tenant: str = "t") -> RequestRecord:
    return RequestRecord(request_id=request_id, time=at, tenant_id=tenant, key_id="k", endpoint="/v1/chat/completions",
                         requested_model="m", served_model="m", status="200", error_code=None, router=None, strategy=None,
                         calls=(CallRecord("m", "sample", 3, 4, 0.001),), latency_s=0.1, first_byte_s=None)


def partitions(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {str(r[0]) for r in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
            (TABLE,))}


def test_postgres_retention_drops_whole_partitions_and_makes_days_ahead(postgres_url: str) -> None:
    now = time.time()
    store = PostgresRequestStore(postgres_url, retention_days=3)
    try:
        store.setup()
        rows = [row_of(record(f"r{d}", now - d * DAY)) for d in range(3)]
        store.write(rows)
        store.write(rows)  # a replay: idempotent
        store.write([row_of(record("too-old", now - 10 * DAY))])  # past retention: skipped, no partition made for it
        assert {r.request_id for r in store.list(Query(tenant=None))} == {"r0", "r1", "r2"}
        assert partition_name(day_of(now - 10 * DAY)) not in partitions(postgres_url)

        store.maintain(now)
        made = partitions(postgres_url)
        assert {partition_name(day_of(now + d * DAY)) for d in range(3)} <= made  # today and two days ahead

        store.maintain(now + 2 * DAY)  # "today" moves on: the day of r2 is now past retention, its partition dropped
        left = partitions(postgres_url)
        assert partition_name(day_of(now - 2 * DAY)) not in left and partition_name(day_of(now)) in left
        assert {r.request_id for r in store.list(Query(tenant=None))} == {"r0", "r1"}
    finally:
        store.close()


def test_sqlite_retention_and_pages(tmp_path: Path) -> None:
    now = time.time()
    store = SqliteRequestStore(tmp_path / "requests.db", retention_days=3)
    try:
        base = record("x", now)
        rows = [row_of(dataclasses.replace(base, request_id=f"r{i}", time=now - i)) for i in range(7)]
        rows.append(row_of(record("old", now - 5 * DAY)))
        store.write(rows)
        store.write(rows[:3])  # idempotent
        first = store.list(Query(tenant="t", limit=3))
        assert [r.request_id for r in first] == ["r0", "r1", "r2"]
        rest = store.list(Query(tenant="t", after=(first[-1].time, first[-1].request_id), limit=10))
        assert [r.request_id for r in rest] == ["r3", "r4", "r5", "r6", "old"]
        store.maintain(now)
        assert "old" not in {r.request_id for r in store.list(Query(tenant=None, limit=100))}
        assert len(store.list(Query(tenant=None, limit=100))) == 7
    finally:
        store.close()


def test_postgres_table_from_before_the_answer_column_gains_it(postgres_url: str) -> None:
    """A log made by an older gateway gains the stored answer's column on every partition, and takes rows with it."""
    old_schema = SCHEMA.replace(" response_tool_calls jsonb,", "").split("-- Tables made before")[0]
    assert "response_tool_calls" not in old_schema
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(old_schema)
    store = PostgresRequestStore(postgres_url, retention_days=3)
    try:
        store.setup()
        calls = [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
        stored = dataclasses.replace(record("r", time.time()), log_content=True, messages=[{"role": "user", "content": "hi"}],
                                     response_tool_calls=calls)
        store.write([row_of(stored)])
        found = store.get("r", None)
        assert found is not None and found[0].response_tool_calls == calls
    finally:
        store.close()
