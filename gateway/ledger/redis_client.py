"""The redis-py clients the Redis ledger runs on, and its scripts as callables."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError

from . import resp
from .settings import LedgerSettings

AnyRedis = aioredis.Redis | RedisCluster
ScriptClient = AnyRedis | resp.LeanRedis


class _Script:
    """EVALSHA with a fallback to EVAL when the server lost its script cache (restart,
    failover, SCRIPT FLUSH, or a Cluster node seeing the script for the first time)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, client: ScriptClient, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            # EVAL runs the script and caches it on that node, so later calls are one trip again.
            return await client.eval(self.source, len(keys), *keys, *args)


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].endswith("+cluster")


def make_client(settings: LedgerSettings) -> AnyRedis:
    assert settings.redis_url is not None
    url = settings.redis_url
    common: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": settings.redis_socket_timeout_s,
        "socket_connect_timeout": settings.redis_connect_timeout_s,
        "max_connections": settings.redis_max_connections,
        # One immediate retry covers a connection the server closed while idle (e.g. after a
        # restart); anything beyond that must surface quickly as LedgerUnavailable.
        "retry": Retry(NoBackoff(), 1),
    }
    if is_cluster_url(url) or settings.cluster:
        scheme, rest = url.split("://", 1)
        return RedisCluster.from_url(f"{scheme.removesuffix('+cluster')}://{rest}", **common)
    return aioredis.Redis.from_url(url, **common)


__all__ = ["AnyRedis", "ScriptClient", "is_cluster_url", "make_client"]
