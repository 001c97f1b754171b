"""Code that runs in separate OS processes for the multi-process and crash tests.

Kept out of the test modules so that a spawned child imports only this and the ledger.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from gateway.ledger import (
    BudgetExceeded,
    BudgetScope,
    LedgerSettings,
    RateLimitExceeded,
    WindowLimit,
    make_ledger,
)


def _scope(spec: dict[str, Any]) -> BudgetScope:
    return BudgetScope(
        tenant_id=spec["tenant"],
        windows=tuple(WindowLimit(w, limit) for w, limit in spec["windows"]),
    )


async def _hammer(settings: LedgerSettings, spec: dict[str, Any], start: Any) -> tuple[int, int, float]:
    """``attempts`` reserve+settle pairs at ``concurrency``; returns (successes, refusals, charged)."""
    ledger = make_ledger(settings)
    await ledger.ping()
    scope = _scope(spec)
    amount = spec["amount"]
    todo = list(range(spec["attempts"]))
    ok = refused = 0
    charged = 0.0

    async def worker() -> None:
        nonlocal ok, refused, charged
        while todo:
            todo.pop()
            try:
                hold = await ledger.reserve(scope, amount)
            except BudgetExceeded:
                refused += 1
                continue
            await asyncio.sleep(0.001)  # "the upstream call": lets other processes interleave
            # (not `charged += await ...`: that reads `charged` before the await and loses updates)
            got = await ledger.settle(hold, amount)
            charged += got
            ok += 1

    start.wait()  # all processes connected; go at once
    await asyncio.gather(*(worker() for _ in range(spec["concurrency"])))
    await ledger.close()
    return ok, refused, charged


def hammer(settings_json: str, spec: dict[str, Any], start: Any, results: Any) -> None:
    settings = LedgerSettings.model_validate_json(settings_json)
    try:
        results.put(asyncio.run(_hammer(settings, spec, start)))
    except BaseException as e:  # report instead of leaving the parent waiting on the queue
        results.put(f"{type(e).__name__}: {e}")
        raise


async def _admit_many(settings: LedgerSettings, spec: dict[str, Any], start: Any) -> int:
    # Every process runs on the same frozen clock, so all admissions fall in one window and
    # the outcome is exact whatever the machine's speed.
    ledger = make_ledger(settings, clock=lambda: float(spec["now"]))
    await ledger.ping()
    admitted = 0
    start.wait()
    for _ in range(spec["attempts"]):
        try:
            await ledger.admit_request(
                spec["tenant"], rpm=spec["rpm"], tpm=spec["tpm"], estimated_tokens=spec["tokens"]
            )
            admitted += 1
        except RateLimitExceeded:
            pass
    await ledger.close()
    return admitted


def admit_many(settings_json: str, spec: dict[str, Any], start: Any, results: Any) -> None:
    settings = LedgerSettings.model_validate_json(settings_json)
    try:
        results.put(asyncio.run(_admit_many(settings, spec, start)))
    except BaseException as e:
        results.put(f"{type(e).__name__}: {e}")
        raise


async def _reserve_and_hang(settings: LedgerSettings, spec: dict[str, Any]) -> None:
    ledger = make_ledger(settings)
    hold = await ledger.reserve(_scope(spec), spec["amount"], ttl_s=spec["ttl_s"])
    print(json.dumps({"expires_at": hold.expires_at}), flush=True)
    while True:  # "mid-request" until SIGKILLed
        time.sleep(3600)


if __name__ == "__main__":
    # python -m tests.ledger.workers '<settings json>' '<spec json>'
    asyncio.run(_reserve_and_hang(LedgerSettings.model_validate_json(sys.argv[1]), json.loads(sys.argv[2])))
