"""Which configured model serves a request: the one named, or the router's pick for `auto`."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

from contracts.prompts import prompt_text
from gateway.accounting import budget_scope
from gateway.config import ModelConfig, TenantConfig
from gateway.errors import GatewayError, invalid_request, model_not_found
from gateway.ledger import LedgerError
from gateway.schemas import ChatCompletionRequest
from gateway.state import GatewayState

AUTO = "auto"


@dataclass(frozen=True)
class RouteChoice:
    """The router's pick: the model, the client-visible `ttc.router` object, and the chosen
    model's predicted quality, which the strategies take as the prompt's difficulty."""

    model: ModelConfig
    info: dict[str, Any]
    predicted_quality: float


def named_model(state: GatewayState, tenant: TenantConfig, name: str, mode: str = "chat") -> ModelConfig:
    model = state.models_by_name.get(name)
    if model is None or not tenant.allows(name):
        raise model_not_found(name)
    if model.mode != mode:
        raise invalid_request(f"Model '{name}' is a {model.mode} model and cannot serve this endpoint.", param="model")
    return model


async def route(state: GatewayState, tenant: TenantConfig, request: ChatCompletionRequest, messages: list[dict[str, Any]], prompt_tokens: int) -> RouteChoice:
    """Ask the router, once per request."""
    from router import Candidate

    profile_name = request.model[len(AUTO) + 1 :] if request.model.startswith(AUTO + ":") else None
    router_cfg = state.config.router
    profile = router_cfg.profiles.get(profile_name) if profile_name else None
    if profile_name and profile is None:
        raise model_not_found(request.model)
    if state.router is None:
        raise GatewayError(400, "Routing with model 'auto' needs a router artifact (config: router.artifact).", code="router_unavailable", param="model")

    names = profile.models if profile and profile.models else [m.name for m in state.config.models]
    pool = [state.models_by_name[n] for n in names if n in state.models_by_name and tenant.allows(n) and state.models_by_name[n].mode == "chat"]
    known = set(state.router.models)
    # Models the artifact does not know yet are offered too: the router scores them with a cold-start
    # prior and flags them `onboarded: false`; they are picked only where the profile allows it.
    candidates = [
        Candidate(name=m.router_name or m.name, input_per_1m=m.price.input_per_1m, output_per_1m=m.price.output_per_1m,
                  prompt_tokens=prompt_tokens, tier=m.tier)
        for m in pool
    ]
    allow_unonboarded = bool(profile and profile.allow_unonboarded)
    if not any(c.name in known for c in candidates):
        raise GatewayError(400, "None of the models you may use is known to the router artifact.", code="router_unavailable", param="model")

    ttc = request.ttc
    cost_weight = next((w for w in (ttc.cost_weight if ttc else None, profile.cost_weight if profile else None, tenant.routing.cost_weight) if w is not None), router_cfg.default_cost_weight)
    tolerance = next((t for t in (ttc.tolerance if ttc else None, profile.tolerance if profile else None, tenant.routing.tolerance) if t is not None), None)
    # Featurizing is CPU work (an embedding model): off the event loop, so other requests' I/O
    # keeps moving while one prompt is being scored.
    decision = await asyncio.to_thread(state.router.route, prompt_text(messages), candidates, cost_weight=cost_weight, tolerance=tolerance,
                                       allow_unonboarded=allow_unonboarded)
    by_router_name = {(m.router_name or m.name): m for m in pool}
    rate = next((r for r in (profile.explore_rate if profile else None, tenant.routing.explore_rate) if r is not None), 0.0)
    drawable: list[str] = []
    if rate > 0:
        # Exploration draws only among the allowed candidates the tenant can afford: an expected
        # cost within the per-request cap and within what is left of the tightest budget window
        # (one ledger read, made only for exploring tenants). The reservation that follows still
        # checks the worst case, as for any pick.
        limit = await affordable_usd(state, tenant)
        drawable = [c.model for c in decision.candidates if c.model in by_router_name and (c.onboarded or allow_unonboarded)
                    and (limit is None or c.expected_cost_usd <= limit)]
    served, exploration = explore(decision.model, drawable, rate)
    if exploration:
        exploration["router_pick"] = by_router_name[decision.model].name
    chosen = by_router_name[served]
    info = {
        "model": chosen.name,
        "candidates": [
            {"model": by_router_name[c.model].name, "predicted_quality": round(float(c.predicted_quality), 6), "expected_cost_usd": round(float(c.expected_cost_usd), 10),
             "onboarded": c.onboarded}
            for c in decision.candidates
            if c.model in by_router_name
        ],
        "version": decision.version,
        "latency_ms": round(float(decision.latency_ms), 3),
        **exploration,
    }
    quality = next(float(c.predicted_quality) for c in decision.candidates if c.model == served)
    return RouteChoice(chosen, info, quality)


async def affordable_usd(state: GatewayState, tenant: TenantConfig) -> float | None:
    """The most one request may be expected to cost: the tenant's per-request cap and the money
    left in its tightest window, whichever is less (None: no limit known). A ledger that cannot
    be read leaves the cap alone; the reservation then decides, as it does for every request."""
    limits = [tenant.max_cost_per_request_usd] if tenant.max_cost_per_request_usd is not None else []
    if tenant.budgets:
        try:
            remaining = await state.ledger.remaining_usd(budget_scope(tenant, None))
        except LedgerError:
            remaining = None
        if remaining is not None:
            limits.append(remaining)
    return min(limits) if limits else None


def explore(pick: str, candidates: list[str], rate: float) -> tuple[str, dict[str, Any]]:
    """With probability `rate`, a candidate drawn uniformly instead of the router's pick.

    Returns the model to serve and what `ttc.router` records (nothing when `rate` is 0):
    `explored`, `router_pick`, and `propensity`, the probability that this policy serves the
    model it served, (1 - rate) * [served == pick] + rate / K, which off-policy evaluation of
    another router (inverse propensity weighting) divides by."""
    if rate <= 0 or not candidates:
        return pick, {}
    explored = random.random() < rate
    served = random.choice(candidates) if explored else pick
    propensity = (1 - rate) * (served == pick) + rate / len(candidates)
    return served, {"explored": explored, "router_pick": pick, "propensity": round(propensity, 6)}
