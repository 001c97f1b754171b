"""The ledger contract, run unchanged against SQLite, Redis and Redis Cluster (see conftest)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone

import pytest

from gateway.ledger import (
    WINDOWS,
    BudgetExceeded,
    BudgetScope,
    RateLimitExceeded,
    Window,
    WindowLimit,
)

from .conftest import FakeClock, LedgerFactory


def scope(*windows: tuple[Window, float], tenant: str = "acme", **kw: object) -> BudgetScope:
    return BudgetScope(tenant_id=tenant, windows=tuple(WindowLimit(w, l) for w, l in windows), **kw)  # type: ignore[arg-type]


def by_window(usage: object) -> dict[str, dict[str, float]]:
    return {w.window: w.model_dump() for w in usage.windows}  # type: ignore[attr-defined]


@pytest.mark.parametrize("window", WINDOWS)
async def test_reserve_within_and_over_limit(make_ledger: LedgerFactory, clock: FakeClock, window: Window) -> None:
    ledger = await make_ledger(clock=clock)
    s = scope((window, 1.0))
    hold = await ledger.reserve(s, 0.6)
    assert hold.amount_usd == 0.6 and hold.tenant_id == "acme"
    with pytest.raises(BudgetExceeded) as err:
        await ledger.reserve(s, 0.5)
    e = err.value
    assert (e.window, e.scope, e.limit_usd, e.remaining_usd, e.requested_usd) == (window, "tenant", 1.0, 0.4, 0.5)
    assert window in str(e) and "0.400000" in str(e)
    # Exactly up to the limit is allowed.
    await ledger.reserve(s, 0.4)
    assert await ledger.remaining_usd(s) == 0.0


async def test_multi_window_all_or_nothing(make_ledger: LedgerFactory, clock: FakeClock) -> None:
    ledger = await make_ledger(clock=clock)
    s = scope(("day", 2.0), ("month", 3.0))
    await ledger.settle(await ledger.reserve(s, 1.5), 1.5)

    with pytest.raises(BudgetExceeded) as err:  # day has 0.5 left, month 1.5
        await ledger.reserve(s, 1.0)
    assert err.value.window == "day"
    u = by_window(await ledger.usage(s))
    assert u["month"]["reserved_usd"] == 0.0, "a refused reserve must not reserve in any window"

    clock.advance(86400)  # next day, same month (2027-01-14)
    h = await ledger.reserve(s, 1.0)
    with pytest.raises(BudgetExceeded) as err:  # day has 1.0 left, month 0.5
        await ledger.reserve(s, 1.0)
    assert err.value.window == "month" and err.value.remaining_usd == 0.5
    u = by_window(await ledger.usage(s))
    assert u["day"]["reserved_usd"] == 1.0 and u["month"]["reserved_usd"] == 1.0
    await ledger.release(h)
    u = by_window(await ledger.usage(s))
    assert u["day"]["reserved_usd"] == 0.0 and u["month"]["reserved_usd"] == 0.0


async def test_per_request_cap(make_ledger: LedgerFactory) -> None:
    ledger = await make_ledger()
    s = scope(("day", 10.0), max_cost_per_request_usd=0.5)
    with pytest.raises(BudgetExceeded) as err:
        await ledger.reserve(s, 0.6)
    assert err.value.scope == "request" and err.value.limit_usd == 0.5
    await ledger.reserve(s, 0.5)
    # The cap alone, with no windows, also applies.
    with pytest.raises(BudgetExceeded):
        await ledger.reserve(scope(max_cost_per_request_usd=0.1, tenant="capped"), 0.2)


async def test_per_key_budgets(make_ledger: LedgerFactory) -> None:
    ledger = await make_ledger()
    key_a = scope(("day", 2.0), key_id="key-a", key_windows=(WindowLimit("day", 1.0),))
    key_b = scope(("day", 2.0), key_id="key-b", key_windows=(WindowLimit("day", 1.0),))
    await ledger.settle(await ledger.reserve(key_a, 0.8), 0.8)
    with pytest.raises(BudgetExceeded) as err:
        await ledger.reserve(key_a, 0.5)
    assert (err.value.scope, err.value.window, err.value.remaining_usd) == ("key", "day", 0.2)
    hb = await ledger.reserve(key_b, 0.9)  # another key has its own budget...
    with pytest.raises(BudgetExceeded) as err:  # ...but both draw on the tenant's 2.0 (0.3 left)
        await ledger.reserve(key_b, 0.4)
    assert (err.value.scope, err.value.remaining_usd) == ("tenant", 0.3)
    with pytest.raises(BudgetExceeded) as err:  # tenant-level callers without a key too
        await ledger.reserve(scope(("day", 2.0)), 0.4)
    assert err.value.scope == "tenant"

    ua = await ledger.usage(key_a)
    assert ua.key_id == "key-a"
    assert [(w.spent_usd, w.reserved_usd, w.remaining_usd) for w in ua.key_windows] == [(0.8, 0.0, 0.2)]
    assert [(w.spent_usd, w.reserved_usd) for w in ua.windows] == [(0.8, 0.9)]
    ub = await ledger.usage(key_b)
    assert [(w.spent_usd, w.reserved_usd) for w in ub.key_windows] == [(0.0, 0.9)]
    await ledger.release(hb)
    # Key ids with separator-like characters cannot collide with other keys' fields.
    odd = scope(("day", 2.0), key_id="key-a:day|x", key_windows=(WindowLimit("day", 0.5),))
    await ledger.reserve(odd, 0.5)


async def test_settle_is_idempotent(make_ledger: LedgerFactory) -> None:
    ledger = await make_ledger()
    s = scope(("day", 1.0))
    hold = await ledger.reserve(s, 0.5)
    assert await ledger.settle(hold, 0.3) == 0.3
    assert await ledger.settle(hold, 0.3) == 0.0  # second settle charges nothing
    await ledger.release(hold)  # no-op after settle
    u = await ledger.usage(s)
    assert (u.windows[0].spent_usd, u.windows[0].reserved_usd, u.requests) == (0.3, 0.0, 1)
    # A second ledger instance (another replica) sees the same hold as settled.
    other = await make_ledger()
    assert await other.settle(hold, 0.3) == 0.0
    assert (await other.usage(s)).windows[0].spent_usd == 0.3


async def test_settle_above_hold_charges_truly_and_logs(
    make_ledger: LedgerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = await make_ledger()
    s = scope(("day", 1.0))
    hold = await ledger.reserve(s, 0.1)
    with caplog.at_level(logging.WARNING, logger="gateway.ledger"):
        assert await ledger.settle(hold, 0.25) == 0.25
    assert any("overage" in r.getMessage() and "0.150000" in r.getMessage() for r in caplog.records)
    u = await ledger.usage(s)
    assert (u.windows[0].spent_usd, u.windows[0].reserved_usd, u.windows[0].remaining_usd) == (0.25, 0.0, 0.75)


async def test_release_returns_money(make_ledger: LedgerFactory) -> None:
    ledger = await make_ledger()
    s = scope(("day", 1.0))
    hold = await ledger.reserve(s, 0.7)
    with pytest.raises(BudgetExceeded):
        await ledger.reserve(s, 0.7)
    await ledger.release(hold)
    await ledger.release(hold)  # idempotent
    assert await ledger.settle(hold, 0.7) == 0.0  # a released hold cannot be charged later
    h2 = await ledger.reserve(s, 0.7)
    assert await ledger.settle(h2, 0.7) == 0.7
    u = await ledger.usage(s)
    assert (u.windows[0].spent_usd, u.windows[0].reserved_usd, u.requests) == (0.7, 0.0, 1)


async def test_reservation_ttl_expiry_returns_money_in_refund_mode(make_ledger: LedgerFactory, clock: FakeClock) -> None:
    ledger = await make_ledger(clock=clock, reservation_ttl_s=30, expired_holds="refund")
    s = scope(("day", 1.0))
    await ledger.reserve(s, 0.6)  # default TTL from settings
    await ledger.reserve(s, 0.3, ttl_s=90)  # explicit TTL
    assert (await ledger.usage(s)).windows[0].reserved_usd == 0.9
    clock.advance(31)
    assert (await ledger.usage(s)).windows[0].reserved_usd == 0.3
    await ledger.reserve(s, 0.7)
    clock.advance(60)
    u = await ledger.usage(s)
    assert (u.windows[0].reserved_usd, u.windows[0].spent_usd) == (0.0, 0.0)


async def test_settle_after_expiry_still_charges(
    make_ledger: LedgerFactory, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = await make_ledger(clock=clock)
    s = scope(("day", 1.0))
    hold = await ledger.reserve(s, 0.4, ttl_s=10)
    clock.advance(11)
    with caplog.at_level(logging.WARNING, logger="gateway.ledger"):
        assert await ledger.settle(hold, 0.4) == 0.4  # the upstream call happened: charge it
    assert any("after its TTL expired" in r.getMessage() for r in caplog.records)
    assert await ledger.settle(hold, 0.4) == 0.0
    u = await ledger.usage(s)
    assert (u.windows[0].spent_usd, u.windows[0].reserved_usd) == (0.4, 0.0)


async def test_set_limits_seen_by_other_instance(make_ledger: LedgerFactory) -> None:
    admin, replica = await make_ledger(), await make_ledger()
    s = scope(("day", 10.0), max_cost_per_request_usd=5.0)
    await replica.reserve(s, 1.0)
    await admin.set_limits("acme", [WindowLimit("day", 1.5), WindowLimit("total", 100.0)], None)
    with pytest.raises(BudgetExceeded) as err:
        await replica.reserve(s, 0.6)
    assert (err.value.window, err.value.limit_usd, err.value.remaining_usd) == ("day", 1.5, 0.5)
    u = await replica.usage(s)
    assert [(w.window, w.limit_usd) for w in u.windows] == [("day", 1.5), ("total", 100.0)]
    await replica.reserve(s, 0.5)

    await admin.set_limits("acme", [WindowLimit("day", 50.0)], 0.25)  # stored cap replaces config cap
    with pytest.raises(BudgetExceeded) as err:
        await replica.reserve(s, 0.3)
    assert err.value.scope == "request"
    stored = await replica.stored_limits("acme")
    assert stored is not None and (stored.cap, stored.windows) == (250_000, (("day", 50_000_000),))
    await admin.clear_limits("acme")  # back to config: day 10, cap 5
    assert await replica.stored_limits("acme") is None
    await replica.reserve(s, 4.0)
    assert [(w.window, w.limit_usd) for w in (await replica.usage(s)).windows] == [("day", 10.0)]
    # Other tenants are untouched.
    assert [(w.window, w.limit_usd) for w in (await replica.usage(scope(("day", 3.0), tenant="other"))).windows] == [
        ("day", 3.0)
    ]


async def test_usage_shape_and_rounding(make_ledger: LedgerFactory) -> None:
    ledger = await make_ledger()
    s = scope(("day", 1.0), ("month", 2.0))
    for _ in range(3):
        await ledger.settle(await ledger.reserve(s, 1 / 3), 1 / 3)
    tiny = await ledger.reserve(s, 0.0000004)  # rounds up: a hold is never smaller than asked
    assert tiny.amount_usd == 0.000001
    await ledger.release(tiny)
    with pytest.raises(BudgetExceeded) as err:
        await ledger.reserve(s, 0.1234567)
    assert (err.value.requested_usd, err.value.remaining_usd) == (0.123457, 0.000001)
    u = await ledger.usage(s)
    body = u.model_dump(exclude={"key_id", "key_windows"})
    assert set(body) == {"tenant", "windows", "requests"}
    assert body["tenant"] == "acme" and body["requests"] == 3
    assert body["windows"][0] == {
        "window": "day",
        "limit_usd": 1.0,
        "spent_usd": 0.999999,
        "reserved_usd": 0.0,
        "remaining_usd": 0.000001,
    }
    assert body["windows"][1] == {
        "window": "month",
        "limit_usd": 2.0,
        "spent_usd": 0.999999,
        "reserved_usd": 0.0,
        "remaining_usd": 1.000001,
    }
    # Overage pushes spent over the limit: remaining is clamped at 0, never negative.
    h = await ledger.reserve(s, 0.000001)
    await ledger.settle(h, 0.5)
    u = await ledger.usage(s)
    assert u.windows[0].spent_usd == 1.499999 and u.windows[0].remaining_usd == 0.0
    assert await ledger.remaining_usd(s) == 0.0
    assert await ledger.remaining_usd(scope(tenant="nolimits")) is None


async def test_a_hold_covers_what_was_asked(make_ledger: LedgerFactory) -> None:
    # Cheap local models cost a few micro-dollars per call: a hold rounded half-up would be short of
    # the worst case a strategy planned its calls against.
    ledger = await make_ledger()
    s = scope(("day", 1.0))
    for asked in (0.0000004, 0.0000154, 1 / 3, 0.000015 * 3):
        hold = await ledger.reserve(s, asked)
        assert asked <= hold.amount_usd < asked + 0.000001, asked
        await ledger.release(hold)
    # Float noise around a whole micro-dollar amount does not cost one more.
    assert (await ledger.reserve(s, 0.1 + 0.2 - 0.3 + 0.000015)).amount_usd == 0.000015


@pytest.mark.parametrize(
    ("window", "start", "step"),
    [
        ("minute", datetime(2027, 1, 13, 12, 0, 59, 500000), timedelta(seconds=1)),
        ("hour", datetime(2027, 1, 13, 12, 59, 59), timedelta(seconds=2)),
        ("day", datetime(2027, 1, 13, 23, 59, 59), timedelta(seconds=2)),
        ("week", datetime(2027, 1, 17, 23, 59, 59), timedelta(seconds=2)),  # Sunday -> Monday
        ("month", datetime(2027, 1, 31, 23, 59, 59), timedelta(seconds=2)),
        ("total", datetime(2027, 12, 31, 23, 59, 59), timedelta(days=400)),
    ],
)
async def test_calendar_window_rollover(
    make_ledger: LedgerFactory, clock: FakeClock, window: Window, start: datetime, step: timedelta
) -> None:
    ledger = await make_ledger(clock=clock)
    s = scope((window, 1.0))
    clock.set(start.replace(tzinfo=timezone.utc))
    await ledger.settle(await ledger.reserve(s, 0.9), 0.9)
    straddler = await ledger.reserve(s, 0.1)  # reserved before the boundary...
    with pytest.raises(BudgetExceeded):
        await ledger.reserve(s, 0.1)
    clock.advance(step.total_seconds())
    if window == "total":  # never resets (the straddling hold has long expired, charged its amount)
        assert (await ledger.usage(s)).windows[0].spent_usd == 1.0
        with pytest.raises(BudgetExceeded):
            await ledger.reserve(s, 0.2)
        return
    u = await ledger.usage(s)
    assert (u.windows[0].spent_usd, u.windows[0].reserved_usd) == (0.0, 0.0)
    # ...is charged to the bucket it was reserved in, not to the new one.
    assert await ledger.settle(straddler, 0.1) == 0.1
    assert (await ledger.usage(s)).windows[0].spent_usd == 0.0
    await ledger.reserve(s, 1.0)


async def test_week_starts_monday_utc(make_ledger: LedgerFactory, clock: FakeClock) -> None:
    ledger = await make_ledger(clock=clock)
    s = scope(("week", 1.0))
    clock.set(datetime(2027, 1, 11, 0, 0, 1, tzinfo=timezone.utc))  # Monday
    await ledger.settle(await ledger.reserve(s, 1.0), 1.0)
    clock.set(datetime(2027, 1, 17, 23, 59, 0, tzinfo=timezone.utc))  # Sunday, same week
    with pytest.raises(BudgetExceeded):
        await ledger.reserve(s, 0.01)


async def test_concurrent_reserves_never_exceed_limit(make_ledger: LedgerFactory) -> None:
    ledger = await make_ledger()
    s = scope(("day", 5.0), ("month", 100.0))

    async def attempt() -> bool:
        try:
            hold = await ledger.reserve(s, 0.1)
        except BudgetExceeded:
            return False
        await asyncio.sleep(0)
        await ledger.settle(hold, 0.1)
        return True

    results = await asyncio.gather(*(attempt() for _ in range(200)))
    assert sum(results) == 50
    u = by_window(await ledger.usage(s))
    assert u["day"]["spent_usd"] == 5.0 and u["day"]["reserved_usd"] == 0.0
    assert (await ledger.usage(s)).requests == 50


async def test_rpm_shared_between_instances(make_ledger: LedgerFactory, clock: FakeClock) -> None:
    a, b = await make_ledger(clock=clock), await make_ledger(clock=clock)
    for i in range(5):
        await (a if i % 2 else b).admit_request("acme", rpm=5, tpm=None, estimated_tokens=10)
        clock.advance(10)
    with pytest.raises(RateLimitExceeded) as err:
        await a.admit_request("acme", rpm=5, tpm=None, estimated_tokens=10)
    # Sliding window: the oldest admission (50 s ago) leaves it in 10 s.
    assert err.value.limit == "rpm" and err.value.retry_after_s == pytest.approx(10.0)
    await b.admit_request("other", rpm=5, tpm=None, estimated_tokens=10)  # per tenant
    clock.advance(10.001)
    await b.admit_request("acme", rpm=5, tpm=None, estimated_tokens=10)
    with pytest.raises(RateLimitExceeded):
        await a.admit_request("acme", rpm=5, tpm=None, estimated_tokens=10)
    # No limits configured: nothing is counted or refused.
    await a.admit_request("acme", rpm=None, tpm=None, estimated_tokens=10)


async def test_tpm_shared_between_instances_with_true_up(make_ledger: LedgerFactory, clock: FakeClock) -> None:
    a, b = await make_ledger(clock=clock), await make_ledger(clock=clock)
    await a.admit_request("acme", rpm=None, tpm=1000, estimated_tokens=400)
    clock.advance(5)
    await b.admit_request("acme", rpm=None, tpm=1000, estimated_tokens=400)
    with pytest.raises(RateLimitExceeded) as err:
        await a.admit_request("acme", rpm=None, tpm=1000, estimated_tokens=400)
    assert err.value.limit == "tpm" and err.value.retry_after_s == pytest.approx(55.0)
    # The first request really used only 100 tokens: the true-up refunds 300.
    await a.record_tokens("acme", tpm=1000, tokens=100, estimated_tokens=400)
    await b.admit_request("acme", rpm=None, tpm=1000, estimated_tokens=400)
    # The second used 700: charging the extra 300 blocks even a small request.
    await b.record_tokens("acme", tpm=1000, tokens=700, estimated_tokens=400)
    with pytest.raises(RateLimitExceeded):
        await a.admit_request("acme", rpm=None, tpm=1000, estimated_tokens=50)
    with pytest.raises(RateLimitExceeded) as err:  # can never fit
        await a.admit_request("acme", rpm=None, tpm=1000, estimated_tokens=1001)
    assert err.value.retry_after_s == 60.0
    clock.advance(61)
    await a.admit_request("acme", rpm=None, tpm=1000, estimated_tokens=1000)


async def test_rpm_and_tpm_together(make_ledger: LedgerFactory, clock: FakeClock) -> None:
    ledger = await make_ledger(clock=clock)
    await ledger.admit_request("acme", rpm=2, tpm=100, estimated_tokens=60)
    with pytest.raises(RateLimitExceeded) as err:
        await ledger.admit_request("acme", rpm=2, tpm=100, estimated_tokens=60)
    assert err.value.limit == "tpm"
    await ledger.admit_request("acme", rpm=2, tpm=100, estimated_tokens=40)
    with pytest.raises(RateLimitExceeded) as err:
        await ledger.admit_request("acme", rpm=2, tpm=100, estimated_tokens=0)
    assert err.value.limit == "rpm"


async def test_ping(make_ledger: LedgerFactory) -> None:
    await (await make_ledger()).ping()


async def test_tpm_retry_after_counts_through_a_long_log(make_ledger: LedgerFactory, clock: FakeClock) -> None:
    ledger = await make_ledger(clock=clock)
    first = clock.now
    for _ in range(250):  # 250 x 4 tokens fills tpm=1000
        await ledger.admit_request("acme", rpm=None, tpm=1000, estimated_tokens=4)
        clock.advance(0.1)
    with pytest.raises(RateLimitExceeded) as err:
        await ledger.admit_request("acme", rpm=None, tpm=1000, estimated_tokens=800)
    # 800 tokens are free once the 200 oldest admissions (the last at first + 19.9 s) slide out.
    assert err.value.retry_after_s == pytest.approx(first + 19.9 + 60 - clock.now, abs=0.002)
