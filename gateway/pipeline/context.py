"""What every step of one request shares: the state it started with, who asked, the account its
calls are charged to, and what the plan step decided that the respond and observe steps report."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from gateway.accounting import Account
from gateway.auth import TenantPrincipal
from gateway.config import ModelConfig
from gateway.pipeline.calls import UpstreamCalls
from gateway.state import GatewayState


@dataclass
class RequestContext:
    state: GatewayState
    principal: TenantPrincipal
    account: Account
    calls: UpstreamCalls
    endpoint: str
    requested_model: str
    request_id: str
    started: float = field(default_factory=time.perf_counter)
    wall_time: float = field(default_factory=time.time)
    # Filled by the plan step.
    model: ModelConfig | None = None
    estimated_tokens: int = 0
    router_info: dict[str, Any] | None = None
    strategy_name: str | None = None
    # Set once the rate limiter has counted this request, whose token estimate is then trued up.
    admitted: bool = False
    # For the request's record: what was asked and answered, and how the strategy ran.
    messages: list[dict[str, Any]] | None = None
    response_text: str | None = None
    response_tool_calls: list[dict[str, Any]] | None = None
    # The client's `store: false`: this request's content is not kept, even for a tenant that logs content.
    keep_content: bool = True
    strategy_n: int | None = None
    degraded: bool = False

    @classmethod
    def open(cls, state: GatewayState, principal: TenantPrincipal, endpoint: str, requested_model: str,
             request_id: str) -> RequestContext:
        account = Account.for_principal(state.ledger, principal, state.inflight)
        calls = UpstreamCalls(state.config, state.upstreams, allows=principal.tenant.allows, metrics=state.metrics)
        return cls(state, principal, account, calls, endpoint, requested_model, request_id)

    @property
    def tenant_id(self) -> str:
        return self.principal.tenant.id

    @property
    def model_label(self) -> str:
        """The model a request is reported under before an upstream answered."""
        return self.model.name if self.model is not None else "-"
