"""Admin API: tenant usage and run-time budget changes, plus an explicit reload."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from gateway.accounting import budget_scope
from gateway.auth import AdminPrincipal, Principal
from gateway.edge import authenticate, parse_body
from gateway.config import BudgetWindowConfig, TenantConfig
from gateway.errors import GatewayError, invalid_request, ledger_unavailable, not_found
from gateway.ledger import LedgerUnavailable, WindowLimit
from gateway.runtime import GatewayRuntime


class BudgetUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    budgets: list[BudgetWindowConfig]
    max_cost_per_request_usd: float | None = Field(default=None, ge=0)


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def mount(app: FastAPI, runtime: GatewayRuntime) -> None:
    def tenant_for(principal: Principal, tenant_id: str) -> TenantConfig:
        # A tenant key sees only its own tenant; everything else is "not found", not "forbidden",
        # so tenant ids do not leak.
        if not isinstance(principal, AdminPrincipal) and principal.tenant.id != tenant_id:
            raise not_found(f"Tenant '{tenant_id}' not found.")
        for tenant in runtime.state.config.tenants:
            if tenant.id == tenant_id:
                return tenant
        raise not_found(f"Tenant '{tenant_id}' not found.")

    @app.get("/v1/tenants/{tenant_id}/usage")
    async def usage(tenant_id: str, request: Request) -> Response:
        principal = authenticate(runtime, request)
        tenant = tenant_for(principal, tenant_id)
        key_id = None if isinstance(principal, AdminPrincipal) else principal.key_id
        await runtime.state.inflight.wait_settled(tenant.id)  # answers this process sent are charged
        try:
            report = await runtime.state.ledger.usage(budget_scope(tenant, key_id))
        except LedgerUnavailable:
            raise ledger_unavailable() from None
        return _json(report.model_dump())

    @app.put("/v1/tenants/{tenant_id}/budget")
    async def set_budget(tenant_id: str, request: Request) -> Response:
        principal = authenticate(runtime, request)
        tenant = tenant_for(principal, tenant_id)
        if not isinstance(principal, AdminPrincipal):
            raise GatewayError(403, "Only the admin key may change budgets.", type="permission_error", code="admin_required")
        update = await parse_body(request, BudgetUpdate, runtime.state.config.server.max_body_bytes)
        windows = [WindowLimit(window=b.window, limit_usd=b.limit_usd) for b in update.budgets]
        if len({w.window for w in windows}) != len(windows):
            raise invalid_request("Each window may appear only once.", param="budgets")
        try:
            await runtime.state.ledger.set_limits(tenant.id, windows, update.max_cost_per_request_usd)
            report = await runtime.state.ledger.usage(budget_scope(tenant, None))
        except LedgerUnavailable:
            raise ledger_unavailable() from None
        return _json(report.model_dump())

    @app.post("/admin/reload")
    async def reload(request: Request) -> Response:
        principal = authenticate(runtime, request)
        if not isinstance(principal, AdminPrincipal):
            raise not_found("Not found.")
        ok = await runtime.reload("admin endpoint")
        if not ok:
            raise GatewayError(400, "The config on disk is invalid; the running config was kept (see logs).", code="invalid_config")
        state = runtime.state
        return _json({"reloaded": True, "models": [m.name for m in state.config.models], "router_version": (state.router.version if state.router is not None else None)})
