"""Redis ledger: every operation is one Lua script call (one round trip), atomic across replicas.

Standalone Redis (``redis://``, ``rediss://``, ``unix://``) and Redis Cluster
(``redis+cluster://seed:port`` / ``rediss+cluster://``, or ``LedgerSettings.cluster``) are
supported. Cluster works because every key of a tenant carries the hash tag ``{<tenant>}``, so a
script never crosses slots (its KEYS, and the buckets an expiring hold names, share the tag).

Failure model: any connection error, timeout, or a Redis still loading its AOF raises
``LedgerUnavailable`` (the gateway answers 503: fail-closed). The client reconnects on the next
call, so service resumes after Redis comes back without recreating this object. Scripts are
idempotent on the client-generated reservation id, which makes the one automatic retry safe.

Time comes from the calling replica's clock (passed to the scripts), not from Redis TIME, so that
tests can inject a clock and both backends share one notion of "now". Replicas therefore need
NTP-synchronised clocks; a skew of s seconds shifts window boundaries and hold expiry by s.
The exception is a reserve's deadline (``redis_socket_timeout_s`` after it is issued), compared
with Redis TIME so that a reserve reaching a stalled Redis later is refused rather than left as a
hold nobody settles. A Redis clock running ahead is learned from its refusals; one running behind
lets such a reserve land up to the skew late, and the spool's cancel-by-id (spooled.py) drops it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from functools import lru_cache
from typing import Any, TypeVar

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import BusyLoadingError, RedisError, ResponseError

from . import resp, scripts
from .redis_client import AnyRedis, ScriptClient, _Script, is_cluster_url, make_client
from .amounts import WindowLimit, from_micro
from .base import (
    BudgetExceeded,
    BudgetScope,
    Hold,
    Ledger,
    LedgerUnavailable,
    RateLimitExceeded,
    TenantUsage,
    check_amount,
    check_ttl,
    log_overage,
    new_reservation_id,
    window_usage,
)
from .policy import (
    Policy,
    decode_policy,
    encode_policy,
    encode_windows,
    escape,
    policy_from,
)
from .settings import LedgerSettings
from .windows import all_buckets, window_length_s

log = logging.getLogger("gateway.ledger")

Clock = Callable[[], float]
T = TypeVar("T")


@lru_cache(maxsize=4096)
def _spent_keys_of_minute(base: str, minute: int) -> tuple[list[str], list[str]]:
    # Bucket boundaries are whole minutes (see windows.all_buckets). Callers must not mutate.
    ids = [bid for bid, _ in all_buckets(minute * 60.0).values()]
    return [f"{base}:s:{bid}" for bid in ids], ids


def _bucket_expiry_ms(created_at: float, grace_s: float) -> tuple[int, ...]:
    return _bucket_expiry_of_minute(int(created_at // 60), grace_s)


@lru_cache(maxsize=1024)
def _buckets_csv(minute: int, grace_s: float) -> str:
    """The bucket ids and their expire-at times of that minute, as a hold's record carries them."""
    ids = ",".join(bid for bid, _ in all_buckets(minute * 60.0).values())
    return f"{ids};{','.join(map(str, _bucket_expiry_of_minute(minute, grace_s)))}"


@lru_cache(maxsize=1024)
def _bucket_expiry_of_minute(minute: int, grace_s: float) -> tuple[int, ...]:
    """When each spent bucket of that minute may vanish: its end, one window length, and grace."""
    return tuple(-1 if end is None else int((end + window_length_s(w) + grace_s) * 1000)
                 for w, (_, end) in all_buckets(minute * 60.0).items())


_DEADLINE_ARG = 13  # position of the deadline among RESERVE's ARGV (ARGV[14])


class RedisLedger(Ledger):
    def __init__(
        self,
        settings: LedgerSettings,
        *,
        clock: Clock = time.time,
        client: AnyRedis | None = None,
        wall_clock: Clock = time.time,  # real time, for reserve deadlines even under a test clock
    ) -> None:
        if settings.redis_url is None and client is None:
            raise ValueError("RedisLedger needs settings.redis_url")
        self._settings = settings
        self._clock, self._wall_clock = clock, wall_clock
        self._client: AnyRedis = client if client is not None else make_client(settings)
        # Every Lua script call (reserve and settle on each request, and the rest) takes the lean
        # pipelined client where it applies; plain commands, and TLS or Cluster URLs, stay on redis-py.
        self._scripts_client: ScriptClient = self._client
        if client is None and settings.redis_url and not settings.cluster and resp.supports(settings.redis_url):
            self._scripts_client = resp.LeanRedis(
                settings.redis_url,
                socket_timeout_s=settings.redis_socket_timeout_s,
                connect_timeout_s=settings.redis_connect_timeout_s,
            )
        # redis-py's cluster client loads the slot map on first use; when many coroutines make
        # that first call at once, their concurrent initialisations close each other's
        # connections. So the first call initialises it alone (see _ensure_initialized).
        self._initialized = not isinstance(self._client, RedisCluster)
        self._init_lock: asyncio.Lock | None = None
        self._redis_ahead_s = 0.0  # how far Redis's clock runs ahead of ours, once a refusal showed it
        self._reserve = _Script(scripts.RESERVE)
        self._settle = _Script(scripts.SETTLE)
        self._release = _Script(scripts.RELEASE)
        self._usage = _Script(scripts.USAGE)
        self._admit = _Script(scripts.ADMIT)
        self._record = _Script(scripts.RECORD)

    @property
    def client(self) -> AnyRedis:
        return self._client

    # -- naming -----------------------------------------------------------------------------

    def _base(self, tenant_id: str) -> str:
        return f"{self._settings.key_prefix}:{{{escape(tenant_id)}}}"

    def _tenant_keys(self, tenant_id: str) -> list[str]:
        b = self._base(tenant_id)
        return [f"{b}:limits", f"{b}:rsv", f"{b}:res", f"{b}:exp", f"{b}:closed"]

    def _spent_keys(self, tenant_id: str, now: float) -> tuple[list[str], list[str]]:
        return _spent_keys_of_minute(self._base(tenant_id), int(now // 60))

    async def _ensure_initialized(self) -> None:
        if self._init_lock is None:
            self._init_lock = asyncio.Lock()
        async with self._init_lock:
            if not self._initialized:
                assert isinstance(self._client, RedisCluster)
                await self._client.initialize()
                self._initialized = True

    async def _do(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis call, mapping every transport-level failure to LedgerUnavailable.

        Unexpected replies (ResponseError, e.g. OOM or a script bug) map there too: when in
        doubt the ledger fails closed rather than letting a request through unaccounted.
        """
        try:
            if not self._initialized:
                await self._ensure_initialized()
            return await fn()
        except (TimeoutError, RedisError, OSError) as e:
            if isinstance(e, ResponseError) and not isinstance(e, BusyLoadingError):
                # Not a transport problem: OOM, READONLY after a failover, or a bug. Say so.
                log.error("ledger: Redis refused a command: %s", e)
            raise LedgerUnavailable(
                f"budget ledger (Redis) unavailable: {type(e).__name__}: {e}",
                maybe_applied=not isinstance(e, (resp.CommandNotSent, BusyLoadingError)),
            ) from e

    async def _call(self, script: _Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return await self._do(lambda: script(self._scripts_client, keys, args))

    # -- budgets ----------------------------------------------------------------------------

    async def reserve(
        self, scope: BudgetScope, amount_usd: float, *, ttl_s: float | None = None, reservation_id: str | None = None
    ) -> Hold:
        amount = check_amount(amount_usd, round_up=True)
        ttl = check_ttl(self._settings.reservation_ttl_s if ttl_s is None else ttl_s)
        now = self._clock()
        rid = reservation_id or new_reservation_id()
        spent_keys, bucket_ids = self._spent_keys(scope.tenant_id, now)
        policy = policy_from(scope.windows, scope.max_cost_per_request_usd)
        key_windows = policy_from(scope.key_windows, None).windows
        retention = self._settings.closed_retention_s
        res = await self._reserve_in_time(
            [*self._tenant_keys(scope.tenant_id), *spent_keys],
            [
                int(now * 1000),
                rid,
                amount,
                int((now + ttl) * 1000),
                escape(scope.key_id) if scope.key_id else "",
                encode_policy(policy),
                encode_windows(key_windows),
                *bucket_ids,
                -1,  # the deadline, set per attempt
                # What its expiry costs: charge or refund; until when a charge stays correctable;
                # the key and buckets charged, which expire as a settle would set them.
                f"{'c' if self._settings.expired_holds == 'charge' else 'r'};{int((now + ttl + retention) * 1000)};"
                f"{escape(scope.key_id) if scope.key_id else ''};{_buckets_csv(int(now // 60), max(ttl, retention))}",
            ],
        )
        if res[0] in ("late", "gone"):
            why = "reached Redis after this replica gave up on it" if res[0] == "late" else "was cancelled"
            raise LedgerUnavailable(f"budget ledger (Redis): the reservation {why}", maybe_applied=False)
        if res[0] != "ok":
            _, who, window, limit, remaining = res
            raise BudgetExceeded(
                window=window,
                scope=who,
                limit_usd=from_micro(limit),
                remaining_usd=from_micro(remaining),
                requested_usd=from_micro(amount),
            )
        return Hold(
            reservation_id=rid,
            tenant_id=scope.tenant_id,
            amount_usd=from_micro(amount),
            key_id=scope.key_id,
            created_at=now,
            expires_at=now + ttl,
            # -1: no windows. A retried call that had already reserved answers without a figure.
            remaining_after_usd=from_micro(int(res[1])) if len(res) > 1 and int(res[1]) >= 0 else None,
        )

    async def _reserve_in_time(self, keys: list[str], args: list[Any]) -> Any:
        """RESERVE with a deadline: ``redis_socket_timeout_s`` from now, when the first attempt
        times out (less a margin for the reply's way back). Redis refuses it after that, so a copy
        still queued in a stalled Redis (the timed-out attempt, or its retry) takes no effect."""
        budget = self._settings.redis_socket_timeout_s
        give_up = self._wall_clock() + budget - min(0.2, budget / 10)
        args[_DEADLINE_ARG] = int((give_up + self._redis_ahead_s) * 1000)
        res = await self._call(self._reserve, keys, args)
        if res[0] == "late" and self._wall_clock() < give_up:
            # Refused as late though our deadline has not passed: Redis's clock is ahead.
            self._redis_ahead_s = int(res[1]) / 1000 - self._wall_clock()
            log.warning("ledger: Redis's clock runs %.3f s ahead of this replica's; reserve deadlines "
                        "now allow for it (check NTP)", self._redis_ahead_s)
            args[_DEADLINE_ARG] = int((give_up + self._redis_ahead_s) * 1000)
            res = await self._call(self._reserve, keys, args)
        return res

    def _closed_until_ms(self, hold: Hold, now: float) -> int:
        return int((max(now, hold.expires_at) + self._settings.closed_retention_s) * 1000)

    async def settle(self, hold: Hold, actual_usd: float) -> float:
        actual = check_amount(actual_usd)
        now = self._clock()
        # Charge the buckets current at reservation time (see Ledger docstring).
        spent_keys, _ = self._spent_keys(hold.tenant_id, hold.created_at)
        grace = max(hold.expires_at - hold.created_at, self._settings.closed_retention_s)
        expire_at = _bucket_expiry_ms(hold.created_at, grace)
        t = self._tenant_keys(hold.tenant_id)
        charged, status = await self._call(
            self._settle,
            [t[1], t[2], t[3], t[4], *spent_keys],
            [
                int(now * 1000),
                hold.reservation_id,
                actual,
                escape(hold.key_id) if hold.key_id else "",
                self._closed_until_ms(hold, now),
                *expire_at,
            ],
        )
        if status == "dup":
            return 0.0
        log_overage(hold, int(charged), status)
        return from_micro(charged)

    async def release(self, hold: Hold) -> None:
        now = self._clock()
        t = self._tenant_keys(hold.tenant_id)
        await self._call(
            self._release,
            [t[1], t[2], t[3], t[4]],
            [int(now * 1000), hold.reservation_id, self._closed_until_ms(hold, now)],
        )

    async def usage(self, scope: BudgetScope) -> TenantUsage:
        now = self._clock()
        spent_keys, bucket_ids = self._spent_keys(scope.tenant_id, now)
        policy = policy_from(scope.windows, scope.max_cost_per_request_usd)
        out = await self._call(
            self._usage,
            [*self._tenant_keys(scope.tenant_id), *spent_keys],
            [
                int(now * 1000),
                escape(scope.key_id) if scope.key_id else "",
                encode_policy(policy),
                encode_windows(policy_from(scope.key_windows, None).windows),
                *bucket_ids,
            ],
        )
        requests = int(out[0])
        pos = 2

        def take() -> list[Any]:
            nonlocal pos
            n = int(out[pos])
            pos += 1
            rows = []
            for _ in range(n):
                name, limit, spent, reserved = out[pos : pos + 4]
                pos += 4
                rows.append(window_usage(name, int(limit), int(spent), int(reserved)))
            return rows

        windows = take()
        key_windows = take()
        return TenantUsage(
            tenant=scope.tenant_id,
            windows=windows,
            requests=requests,
            key_id=scope.key_id,
            key_windows=key_windows,
        )

    async def set_limits(
        self,
        tenant_id: str,
        windows: Sequence[WindowLimit],
        max_cost_per_request_usd: float | None,
    ) -> None:
        encoded = encode_policy(policy_from(windows, max_cost_per_request_usd))
        # A single HSET is already atomic; no script needed.
        await self._do(lambda: self._client.hset(self._tenant_keys(tenant_id)[0], "policy", encoded))

    async def clear_limits(self, tenant_id: str) -> None:
        await self._do(lambda: self._client.hdel(self._tenant_keys(tenant_id)[0], "policy"))

    async def stored_limits(self, tenant_id: str) -> Policy | None:
        """The limits stored by ``set_limits``, or None (config applies)."""
        raw = await self._do(lambda: self._client.hget(self._tenant_keys(tenant_id)[0], "policy"))
        if raw is None:
            return None
        return decode_policy(raw if isinstance(raw, str) else raw.decode())

    # -- rate limits ------------------------------------------------------------------------

    def _rate_keys(self, tenant_id: str) -> list[str]:
        b = self._base(tenant_id)
        return [f"{b}:rl", f"{b}:rlsum"]

    async def admit_request(
        self, tenant_id: str, *, rpm: int | None, tpm: int | None, estimated_tokens: int
    ) -> None:
        if rpm is None and tpm is None:
            return
        now = self._clock()
        est = max(0, int(estimated_tokens))
        res = await self._call(
            self._admit,
            self._rate_keys(tenant_id),
            [
                int(now * 1000),
                f"r|{uuid.uuid4().hex}|{est}",
                -1 if rpm is None else int(rpm),
                -1 if tpm is None else int(tpm),
                est,
            ],
        )
        if int(res[0]) != 1:
            raise RateLimitExceeded(limit=res[1], retry_after_s=max(0.001, int(res[2]) / 1000))

    async def record_tokens(
        self, tenant_id: str, *, tpm: int | None, tokens: int, estimated_tokens: int = 0
    ) -> None:
        delta = int(tokens) - int(estimated_tokens)
        if tpm is None or delta == 0:
            return
        now = self._clock()
        await self._call(
            self._record,
            self._rate_keys(tenant_id),
            [int(now * 1000), f"a|{uuid.uuid4().hex}|{delta}", delta],
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._do(self._client.ping)

    async def close(self) -> None:
        if self._scripts_client is not self._client:
            await self._scripts_client.aclose()
        await self._client.aclose()


__all__ = ["RedisLedger", "is_cluster_url", "make_client"]
