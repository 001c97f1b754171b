"""Run a strategy by name: the one entry point the gateway calls.

    spec = parse_spec(body.get("extra_body", {}).get("ttc"), tenant_defaults)
    result = await run_strategy(
        messages, spec, generator=gen, budget=ledger_handle, model=routed_model,
        difficulty=router_p_success, params={"max_tokens": ..., "temperature": ...},
        forced_single=forced_single_reason(tools=body.get("tools"), n=body.get("n")),
        progress=on_progress,
    )

The ledger is always left clean: if the strategy raises (upstream error,
cancelled request), the open reservation is settled on what was actually spent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .adaptive import run_adaptive
from .base import Budget, DifficultyFn, Generator, Message, ProgressCallback, RewardScorer, StrategyResult, Verifier
from .best_of_n import run_best_of_n
from .cascade import run_cascade
from .context import RunContext
from .escalation import EscalationModel
from .meter import Meter
from .policy import StoppingPolicy
from .refine import run_refine
from .scale import run_scale
from .single import run_single
from .spec import TTCSpec

StrategyFn = Callable[[list[Message], RunContext], Awaitable[StrategyResult]]

STRATEGIES: dict[str, StrategyFn] = {
    "single": run_single,
    "best_of_n": run_best_of_n,
    "refine": run_refine,
    "scale": run_scale,
    "adaptive": run_adaptive,
    "cascade": run_cascade,
}


async def run_strategy(
    messages: list[Message],
    spec: TTCSpec,
    *,
    generator: Generator,
    budget: Budget,
    model: str | None = None,
    difficulty: float | None = None,
    params: dict[str, Any] | None = None,
    verifier: Verifier | None = None,
    reward_scorer: RewardScorer | None = None,
    difficulty_fn: DifficultyFn | None = None,
    policy: StoppingPolicy | None = None,
    escalation: EscalationModel | None = None,
    progress: ProgressCallback | None = None,
    forced_single: str | None = None,
) -> StrategyResult:
    """Run `spec.strategy` (or `single` when `forced_single` gives a reason).

    Raises `InsufficientBudget` (-> 429) when not even one single call fits,
    `StrategyError` (-> 400) for a misconfigured strategy; upstream errors
    from the Generator propagate unchanged.
    """
    if difficulty is not None and not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"difficulty must be in [0,1], got {difficulty}")
    meter = Meter(generator, budget, max_cost_usd=spec.max_cost_per_request_usd, progress=progress)
    ctx = RunContext(
        meter=meter, spec=spec, params=dict(params or {}), model=model, difficulty=difficulty,
        verifier=verifier, reward_scorer=reward_scorer, difficulty_fn=difficulty_fn, policy=policy,
        escalation=escalation,
    )
    try:
        if forced_single is not None:
            return await run_single(messages, ctx, reason=forced_single)
        return await STRATEGIES[spec.strategy](messages, ctx)
    finally:
        await meter.close()  # no-op when the strategy already settled
