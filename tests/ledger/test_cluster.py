"""Redis Cluster (issue 8): the Lua scripts run against a real 3-master cluster.

The whole contract suite also runs on the cluster (the ``redis-cluster`` backend in
conftest); this module adds what only a cluster can show: tenants spread over different
masters, and each tenant's keys confined to one slot.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import pytest
from redis.crc import key_slot

from gateway.ledger import (
    BudgetExceeded,
    BudgetScope,
    LedgerSettings,
    RateLimitExceeded,
    RedisLedger,
    WindowLimit,
)
from testkit.redis_server import RedisClusterServer

from .conftest import FakeClock


def scope(tenant: str, limit: float = 1.0) -> BudgetScope:
    return BudgetScope(
        tenant_id=tenant,
        windows=(WindowLimit("day", limit), WindowLimit("month", 10 * limit)),
        key_id="k1",
        key_windows=(WindowLimit("hour", limit / 2),),
    )


async def test_tenants_on_different_masters(redis_cluster: RedisClusterServer, clock: FakeClock) -> None:
    prefix = f"c{uuid.uuid4().hex[:8]}"
    settings = LedgerSettings(redis_url=redis_cluster.url, key_prefix=prefix, redis_socket_timeout_s=15.0)
    a, b = RedisLedger(settings, clock=clock), RedisLedger(settings, clock=clock)
    try:
        await a.ping()  # connects and loads the slot map
        # Pick tenants until every master owns at least two of them.
        owners: dict[str, list[str]] = defaultdict(list)
        i = 0
        while len(owners) < 3 or min(len(v) for v in owners.values()) < 2:
            tenant = f"tenant-{i}"
            node = a.client.get_node_from_key(f"{prefix}:{{{tenant}}}:limits")  # type: ignore[union-attr]
            assert node is not None
            owners[node.name].append(tenant)
            i += 1
        tenants = [t for ts in owners.values() for t in ts[:2]]

        async def exercise(tenant: str) -> None:
            s = scope(tenant)
            await a.set_limits(tenant, [WindowLimit("day", 0.75)], 0.5)
            with pytest.raises(BudgetExceeded) as err:
                await b.reserve(s, 0.6)
            assert err.value.scope == "request"
            holds = await asyncio.gather(*(b.reserve(s, 0.05) for _ in range(10)))
            with pytest.raises(BudgetExceeded) as err:  # key hour window: 0.5
                await a.reserve(s, 0.05)
            assert err.value.scope == "key"
            charged = await asyncio.gather(*(a.settle(h, 0.05) for h in holds))
            assert sum(charged) == pytest.approx(0.5)
            assert await b.settle(holds[0], 0.05) == 0.0
            u = await b.usage(s)
            assert [(w.window, w.limit_usd, w.spent_usd, w.reserved_usd) for w in u.windows] == [
                ("day", 0.75, 0.5, 0.0)
            ]
            assert (u.requests, u.key_windows[0].remaining_usd) == (10, 0.0)
            for _ in range(3):
                await (a if _ % 2 else b).admit_request(tenant, rpm=3, tpm=None, estimated_tokens=5)
            with pytest.raises(RateLimitExceeded):
                await a.admit_request(tenant, rpm=3, tpm=None, estimated_tokens=5)
            await b.record_tokens(tenant, tpm=100, tokens=50, estimated_tokens=5)

        await asyncio.gather(*(exercise(t) for t in tenants))

        # Every key a tenant owns hashes to that tenant's single slot.
        slots: dict[str, set[int]] = defaultdict(set)
        for node in redis_cluster.nodes:
            keys = (await a.client.keys(f"{prefix}:*", target_nodes=a.client.get_node(node.host, node.port)))  # type: ignore[union-attr, call-arg]
            for key in map(str, keys):
                tenant = key.split("{", 1)[1].split("}", 1)[0]
                slots[tenant].add(key_slot(key.encode()))
        assert set(slots) == set(tenants)
        assert all(len(s) == 1 for s in slots.values())
        assert len({next(iter(s)) for s in slots.values()}) == len(tenants)
    finally:
        await a.close()
        await b.close()
