"""Resolving a request's test-time-compute strategy into a spec, refused before anything is spent
when it could only fail."""

from __future__ import annotations

from strategies import TTCSpec, TTCSpecError, parse_spec

from gateway.auth import TenantPrincipal
from gateway.config import ModelConfig, TenantConfig
from gateway.errors import invalid_request, model_not_found
from gateway.schemas import ChatCompletionRequest
from gateway.state import GatewayState

# Request keys of the `ttc` object that belong to routing, not to the strategy spec.
ROUTING_KEYS = ("cost_weight", "tolerance")


def requested_strategy(principal: TenantPrincipal, request: ChatCompletionRequest) -> str | None:
    """The strategy to run: the request's, else the tenant's default; None for a plain call."""
    name = request.ttc.strategy if request.ttc and request.ttc.strategy else None
    if name is None:
        name = principal.tenant.strategy.strategy
    if name in (None, "single", "none"):
        return None
    return name


def chat_model(state: GatewayState, tenant: TenantConfig, name: str) -> ModelConfig:
    """A chat model this tenant may use; anything else is the same 404, so names do not leak."""
    model = state.models_by_name.get(name)
    if model is None or not tenant.allows(name) or model.mode != "chat":
        raise model_not_found(name)
    return model


def strategy_spec(state: GatewayState, tenant: TenantConfig, request: ChatCompletionRequest, name: str,
                  first_model: ModelConfig) -> TTCSpec:
    defaults = dict(tenant.strategy.model_dump(exclude_none=True))
    global_reward = state.config.strategies.reward_model
    if global_reward is not None:
        defaults.setdefault("reward_model", global_reward)
    requested = request.ttc.model_dump(exclude_none=True) if request.ttc else {}
    for key in ROUTING_KEYS:
        requested.pop(key, None)
    requested["strategy"] = name
    caps = [c for c in (requested.get("max_cost_per_request_usd"), tenant.max_cost_per_request_usd) if c is not None]
    if caps:
        requested["max_cost_per_request_usd"] = min(caps)
    try:
        spec = parse_spec(requested, defaults)
    except TTCSpecError as error:
        raise invalid_request(str(error), param="ttc") from None
    if spec.selector == "reward":
        _check_reward_model(state, tenant, spec.reward_model)
    if spec.strategy == "cascade":
        _check_cascade(state, tenant, spec, first_model)
    return spec


def _check_cascade(state: GatewayState, tenant: TenantConfig, spec: TTCSpec, first_model: ModelConfig) -> None:
    """Refuse a cascade before its draft is paid for when it could only fail, or would grade
    answers of a model its escalation model never saw."""
    escalation = state.escalation_model
    if escalation is None:
        raise invalid_request("strategy 'cascade' needs an escalation model: set strategies.escalation in the config "
                              "to a file written by `ttc strategies fit-escalation`", param="ttc")
    if spec.strong_model is None:
        raise invalid_request("strategy 'cascade' needs ttc.strong_model, the model to escalate to",
                              param="ttc.strong_model")
    strong = chat_model(state, tenant, spec.strong_model)
    first = chat_model(state, tenant, spec.cheap_model) if spec.cheap_model else first_model
    if escalation.model not in {first.name, first.router_name}:
        raise invalid_request(f"the escalation model was fitted on answers of {escalation.model!r}, but {first.name!r} "
                              f"would answer first: set ttc.cheap_model to {escalation.model!r}, or fit one for "
                              f"{first.name!r}", param="ttc.cheap_model")
    if strong.name == first.name:
        raise invalid_request("ttc.strong_model must differ from the model that answers first", param="ttc.strong_model")


def _check_reward_model(state: GatewayState, tenant: TenantConfig, name: str | None) -> None:
    """Refuse `selector: reward` before any sample is paid for, not after: gateway models attach
    no scores of their own, so without a reward model the selector could only fail later."""
    if name is None:
        raise invalid_request("selector 'reward' needs a reward model: set strategies.reward_model or the "
                              "tenant's strategy.reward_model in the config", param="ttc")
    chat_model(state, tenant, name)
