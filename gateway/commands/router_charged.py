"""router.lab.label's `ChargedModels` over the gateway: configured models called through the
upstream layer, each call held, then settled, on a tenant's ledger account.

The run's `--budget-usd` is a `total` window on a key scope of its own (`label-<run id>`), on
top of the tenant's configured windows: one atomic reserve checks both, so the run stops at its
cap and the tenant's budgets still apply. Each call is one `MeteredCall` on the tenant's account,
as a request's call is: held at its worst case before it starts, settled on its real cost, and
only on the models (and fallbacks) the tenant may use.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from router.lab.label import BudgetExhausted, CompletionOutcome

from gateway.accounting import Account, budget_scope
from gateway.auth import TenantPrincipal
from gateway.config import GatewayConfig, load_config
from gateway.errors import GatewayError
from gateway.ledger import BudgetScope, Ledger, WindowLimit, make_ledger


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
        self.chat_models = tuple(m.name for m in config.models if m.mode == "chat" and found.allows(m.name))
        self.run_id = f"label-{uuid.uuid4().hex[:12]}"
        self.principal = TenantPrincipal(tenant=found, key_id=self.run_id)
        base = budget_scope(found, None)
        self.scope = BudgetScope(tenant_id=base.tenant_id, windows=base.windows,
                                 max_cost_per_request_usd=base.max_cost_per_request_usd, key_id=self.run_id,
                                 key_windows=(WindowLimit(window="total", limit_usd=budget_usd),))
        self.ledger = ledger or make_ledger(config.ledger)
        self.upstreams = Upstreams()
        self.calls = UpstreamCalls(config, self.upstreams, allows=found.allows)
        self.charged = 0.0

    async def complete(self, model: str, messages: list[dict[str, str]], max_tokens: int) -> CompletionOutcome:
        from gateway.pipeline.generator import GatewayGenerator
        from gateway.pipeline.metered import MeteredCall

        configured = self.config.model(model)
        if configured is None or configured.mode != "chat" or not self.principal.tenant.allows(model):
            raise KeyError(f"model {model!r} is not a chat model that tenant {self.principal.tenant.id!r} may use")
        account = Account(ledger=self.ledger, principal=self.principal, scope=self.scope)
        generator = GatewayGenerator(self.calls, configured, account)
        sent = list(messages)
        try:
            metered = await MeteredCall.reserve(account, generator.worst_case_call(configured, sent, 1, max_tokens, "label"))
        except GatewayError as error:
            if error.code == "insufficient_quota":
                raise BudgetExhausted(error.message) from None
            raise
        (answer,) = await metered.call(lambda: generator.generate(sent, 1, max_tokens=max_tokens, role="label"), model)
        await metered.settle()
        self.charged += account.total_cost_usd  # after the await: concurrent calls must not overwrite each other's sum
        return CompletionOutcome(text=answer.text, prompt_tokens=answer.prompt_tokens,
                                completion_tokens=answer.completion_tokens, cost_usd=answer.cost_usd)

    async def spent_usd(self) -> float:
        return self.charged

    async def aclose(self) -> None:
        await self.upstreams.aclose()
        await self.ledger.close()


def open_charged(config: Path, tenant: str, budget_usd: float) -> LedgerChargedModels:
    return LedgerChargedModels(load_config(config), tenant, budget_usd)  # ConfigError is a ValueError
