"""Budget rules: reserve worst case, shrink and flag, 429 only when single does not fit,
release on early stop, never settle above a reservation, best-so-far when it runs out."""

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from strategies.base import Hold, InsufficientBudget
from strategies.lab.budget import InMemoryBudget
from strategies.policy import ConsistencyPolicy
from strategies.runner import run_strategy
from strategies.spec import TTCSpec

from .fakes import ScriptedGenerator

MSGS = [{"role": "user", "content": "What is 6*7?"}]
PARAMS = {"max_tokens": 20}
# A sample costs 10*0.001 + 20*0.001 = 0.03 (prompt billed once per request).


@dataclass
class RecordingBudget(InMemoryBudget):
    log: list[tuple[str, float, float]] = field(default_factory=list)

    async def settle(self, hold: Hold, actual_usd: float) -> None:
        self.log.append(("settle", hold.amount_usd, actual_usd))
        await super().settle(hold, actual_usd)

    async def release(self, hold: Hold) -> None:
        self.log.append(("release", hold.amount_usd, 0.0))
        await super().release(hold)


async def test_in_memory_budget_contract() -> None:
    b = InMemoryBudget(balance_usd=1.0)
    h = await b.reserve(0.6)
    assert h is not None and await b.remaining_usd() == pytest.approx(0.4)
    assert await b.reserve(0.5) is None
    with pytest.raises(ValueError):
        await b.settle(h, 0.7)
    await b.settle(h, 0.25)
    assert await b.remaining_usd() == pytest.approx(0.75)
    h2 = await b.reserve(0.75)
    assert h2 is not None
    await b.release(h2)
    assert b.open_holds == 0 and b.spent_usd == pytest.approx(0.25)
    with pytest.raises(ValueError):
        await b.release(h2)


async def test_best_of_n_reserves_worst_case_and_settles_actual() -> None:
    gen = ScriptedGenerator({"sample": ["\\boxed{42}"]})
    budget = RecordingBudget()
    res = await run_strategy(MSGS, TTCSpec(strategy="best_of_n", n=4), generator=gen, budget=budget, params=PARAMS)
    assert res.strategy.as_dict() == {"name": "best_of_n", "n": 4, "degraded": False}
    assert budget.log == [("settle", pytest.approx(0.09), pytest.approx(0.09))]
    assert res.cost_usd == pytest.approx(0.09)


async def test_best_of_n_shrinks_n_to_fit_and_flags_degraded() -> None:
    gen = ScriptedGenerator({"sample": ["\\boxed{42}"]})
    budget = InMemoryBudget(balance_usd=0.055)  # 0.01 + 2*0.02 fits, 3 samples do not
    res = await run_strategy(MSGS, TTCSpec(strategy="best_of_n", n=8), generator=gen, budget=budget, params=PARAMS)
    assert res.strategy.n == 2 and res.strategy.degraded
    assert "n=2 of 8" in (res.strategy.reason or "")
    assert len(res.calls) == 2


async def test_per_request_cap_shrinks_n() -> None:
    gen = ScriptedGenerator({"sample": ["\\boxed{42}"]})
    spec = TTCSpec(strategy="best_of_n", n=8, max_cost_per_request_usd=0.075)
    res = await run_strategy(MSGS, spec, generator=gen, budget=InMemoryBudget(), params=PARAMS)
    assert res.strategy.n == 3 and res.strategy.degraded and res.cost_usd <= 0.075


@pytest.mark.parametrize("strategy", ["single", "best_of_n", "refine", "scale", "adaptive"])
async def test_insufficient_budget_only_when_single_does_not_fit(strategy: str) -> None:
    gen = ScriptedGenerator({"sample": ["\\boxed{1}"], "draft": ["d"]})
    budget = InMemoryBudget(balance_usd=0.029)
    with pytest.raises(InsufficientBudget) as err:
        await run_strategy(MSGS, TTCSpec(strategy=strategy), generator=gen, budget=budget, params=PARAMS)  # type: ignore[arg-type]
    assert err.value.needed_usd == pytest.approx(0.03)
    assert gen.calls == [] and budget.open_holds == 0


async def test_refine_degrades_rounds_to_what_fits() -> None:
    gen = ScriptedGenerator({"draft": ["draft"], "critique": ["VERDICT: REVISE wrong"], "revise": ["better"]})
    spec = TTCSpec(strategy="refine", rounds=3, critique_max_tokens=20)
    # draft 0.03; each round: critique (10+20 prompt +20 out) + revise (10+40 prompt + 20 out) = 0.12
    budget = InMemoryBudget(balance_usd=0.03 + 0.12 + 0.05)
    res = await run_strategy(MSGS, spec, generator=gen, budget=budget, params=PARAMS)
    assert res.strategy.n == 1 and res.strategy.degraded
    assert gen.roles() == ["draft", "critique", "revise"]


async def test_adaptive_plans_fewer_samples_when_budget_is_low() -> None:
    gen = ScriptedGenerator({"sample": ["\\boxed{1}", "\\boxed{2}", "\\boxed{3}"]})
    spec = TTCSpec(strategy="adaptive", n=8, first_wave=1, wave=1)
    res = await run_strategy(MSGS, spec, generator=gen, budget=InMemoryBudget(balance_usd=0.09), params=PARAMS)
    assert res.meta["max_n"] == 3 and res.strategy.degraded and not res.budget_exhausted
    assert len(res.calls) <= 3


@dataclass
class DrainingBudget(RecordingBudget):
    """Another request of the tenant spends the rest after `drain_after` settles."""

    drain_after: int = 3

    async def settle(self, hold: Hold, actual_usd: float) -> None:
        await super().settle(hold, actual_usd)
        if len(self.log) == self.drain_after:
            self.balance_usd = self.spent_usd + 0.001


async def test_adaptive_returns_best_so_far_when_budget_runs_out() -> None:
    gen = ScriptedGenerator({"sample": ["\\boxed{1}", "\\boxed{2}", "\\boxed{2}", "\\boxed{3}"]})
    budget = DrainingBudget(balance_usd=1.0, drain_after=3)
    spec = TTCSpec(strategy="adaptive", n=8, first_wave=1, wave=1)
    policy = ConsistencyPolicy(max_n=8, schedule=[1, 2, 3, 4, 5, 6, 7, 8], confidence=1.1, give_up_after=99)
    res = await run_strategy(MSGS, spec, generator=gen, budget=budget, params=PARAMS, policy=policy)
    assert res.budget_exhausted and "best answer found so far" in (res.budget_message or "")
    assert res.ttc_dict()["budget_exhausted"] is True
    assert res.answer == "2" and len(res.calls) == 3
    assert res.strategy.degraded
    # wave by wave: each reservation settled on its own, none above its amount
    assert [e[0] for e in budget.log] == ["settle"] * 3
    assert all(actual <= amount + 1e-12 for _, amount, actual in budget.log)


async def test_never_settles_more_than_reserved_even_if_generator_underestimates() -> None:
    gen = ScriptedGenerator({"sample": ["\\boxed{42}"]}, cost_factor=1.5)
    budget = RecordingBudget()
    res = await run_strategy(MSGS, TTCSpec(strategy="best_of_n", n=2), generator=gen, budget=budget, params=PARAMS)
    [(kind, amount, actual)] = budget.log
    assert kind == "settle" and actual == pytest.approx(amount)
    assert res.unreserved_cost_usd == pytest.approx(res.cost_usd - amount)


async def test_refine_accept_releases_unused_reservation_at_once() -> None:
    gen = ScriptedGenerator({"draft": ["\\boxed{42}"], "critique": ["VERDICT: ACCEPT"], "revise": ["x"]})
    budget = RecordingBudget(balance_usd=10.0)
    res = await run_strategy(MSGS, TTCSpec(strategy="refine", rounds=3), generator=gen, budget=budget, params=PARAMS)
    [(kind, amount, actual)] = budget.log
    assert kind == "settle" and actual == pytest.approx(res.cost_usd) and amount > actual
    assert await budget.remaining_usd() == pytest.approx(10.0 - res.cost_usd)
    assert budget.open_holds == 0


async def test_ledger_left_clean_when_upstream_fails() -> None:
    calls = {"n": 0}

    def boom(messages: list, i: int) -> str:
        calls["n"] += 1
        raise RuntimeError("upstream 500")

    gen = ScriptedGenerator({"sample": boom})
    budget = InMemoryBudget(balance_usd=1.0)
    with pytest.raises(RuntimeError):
        await run_strategy(MSGS, TTCSpec(strategy="best_of_n", n=3), generator=gen, budget=budget, params=PARAMS)
    assert budget.open_holds == 0 and await budget.remaining_usd() == pytest.approx(1.0)


class StalledGenerator(ScriptedGenerator):
    """Answers the first call, then hangs like an upstream still generating."""

    async def generate(self, messages: Any, n: int, **kwargs: Any) -> Any:
        if self.calls:
            self.calls.append(self.calls[0])
            await asyncio.sleep(3600)
        return await super().generate(messages, n, **kwargs)


class WatchingBudget(InMemoryBudget):
    """A Budget with the optional `watch` hook, as the gateway's ledger account has."""

    def __init__(self) -> None:
        super().__init__()
        self.watched: list[tuple[Hold, Any]] = []

    def watch(self, hold: Hold, interrupted_cost: Any) -> None:
        self.watched.append((hold, interrupted_cost))


async def _stalled_run(budget: InMemoryBudget) -> tuple[asyncio.Task[Any], StalledGenerator]:
    gen = StalledGenerator({"draft": ["\\boxed{1}"], "critique": ["ok"], "revise": ["\\boxed{1}"]})
    spec = TTCSpec(strategy="refine", rounds=1)
    task = asyncio.ensure_future(run_strategy(MSGS, spec, generator=gen, budget=budget, params=PARAMS))
    for _ in range(200):
        if len(gen.calls) >= 2:
            break
        await asyncio.sleep(0.001)
    return task, gen


async def test_a_cancelled_run_charges_calls_in_flight_at_their_worst_case() -> None:
    budget = InMemoryBudget()
    task, _ = await _stalled_run(budget)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    first_call = 10 * 0.001 + 20 * 0.001
    [entry] = budget.entries.values()
    # the finished draft at its cost, plus the cut-off critique at its worst case, within the hold
    assert first_call < budget.spent_usd <= entry.reserved_usd
    assert budget.open_holds == 0


async def test_the_watch_hook_prices_an_open_hold_for_a_shutdown_drain() -> None:
    budget = WatchingBudget()
    task, _ = await _stalled_run(budget)
    [(hold, interrupted_cost)] = budget.watched
    first_call = 10 * 0.001 + 20 * 0.001
    assert first_call < interrupted_cost() <= hold.amount_usd  # the draft, plus the critique in flight
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
