"""router.lab.label's `ChargedModels` over the gateway: configured models called through the
upstream layer, each call held, then settled, on a tenant's ledger account.

The run's `--budget-usd` is a `total` window on a key scope of its own (`label-<run id>`), on
top of the tenant's configured windows: one atomic reserve checks both, so the run stops at its
cap and the tenant's budgets still apply. A call is held at its worst case (the prompt with the
usual margin and `max_tokens` of output) before it starts, and settled on its real cost.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from router.lab.label import BudgetExhausted, CompletionResult

from gateway.accounting import budget_scope
from gateway.config import GatewayConfig, load_config
from gateway.ledger import BudgetExceeded, BudgetScope, Ledger, WindowLimit, make_ledger


class LedgerChargedModels:
    """Chat models of `config`, charged to one tenant under a run budget."""

    def __init__(self, config: GatewayConfig, tenant: str, budget_usd: float, ledger: Ledger | None = None) -> None:
        from gateway.pipeline.calls import UpstreamCalls
        from gateway.upstream import Upstreams

        found = next((t for t in config.tenants if t.id == tenant), None)
        if found is None:
            raise ValueError(f"tenant {tenant!r} is not in the config; its tenants are {[t.id for t in config.tenants]}")
        if budget_usd <= 0:
            raise ValueError("--budget-usd must be positive")
        self.config = config
        self.chat_models = tuple(m.name for m in config.models if m.mode == "chat")
        self.run_id = f"label-{uuid.uuid4().hex[:12]}"
        base = budget_scope(found, None)
        self.scope = BudgetScope(tenant_id=base.tenant_id, windows=base.windows,
                                 max_cost_per_request_usd=base.max_cost_per_request_usd, key_id=self.run_id,
                                 key_windows=(WindowLimit(window="total", limit_usd=budget_usd),))
        self.ledger = ledger or make_ledger(config.ledger)
        self.upstreams = Upstreams()
        self.calls = UpstreamCalls(config, self.upstreams)
        self.charged = 0.0

    async def complete(self, model: str, messages: list[dict[str, str]], max_tokens: int) -> CompletionResult:
        from gateway.pipeline.generator import GatewayGenerator

        configured = self.config.model(model)
        if configured is None or configured.mode != "chat":
            raise KeyError(f"model {model!r} is not a chat model of the config")
        generator = GatewayGenerator(self.calls, configured)
        worst = generator.estimate_cost(list(messages), 1, max_tokens=max_tokens)
        try:
            hold = await self.ledger.reserve(self.scope, worst)
        except BudgetExceeded as error:
            raise BudgetExhausted(str(error)) from None
        try:
            (answer,) = await generator.generate(list(messages), 1, max_tokens=max_tokens, role="label")
        except BaseException:
            await self.ledger.release(hold)
            raise
        charged = await self.ledger.settle(hold, answer.cost_usd)
        self.charged += charged  # after the await: concurrent calls must not overwrite each other's sum
        return CompletionResult(text=answer.text, prompt_tokens=answer.prompt_tokens,
                                completion_tokens=answer.completion_tokens, cost_usd=answer.cost_usd)

    async def spent_usd(self) -> float:
        return self.charged

    async def aclose(self) -> None:
        await self.upstreams.aclose()
        await self.ledger.close()


def open_charged(config: Path, tenant: str, budget_usd: float) -> LedgerChargedModels:
    return LedgerChargedModels(load_config(config), tenant, budget_usd)  # ConfigError is a ValueError
