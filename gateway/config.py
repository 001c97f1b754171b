"""Gateway configuration: YAML validated by pydantic, with readable errors.

The format follows LiteLLM's ``model_list`` closely so users can move over; LiteLLM's own
spelling (``model_list`` entries with ``model_name``) is accepted as an alias.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from contracts.prices import Price as ContractPrice
from gateway.ledger.settings import LedgerSettings
from gateway.local_runtime import local_model_problem
from gateway.requestlog.settings import RequestLogSettings

ENV_PREFIX = "os.environ/"


class ConfigError(ValueError):
    """Raised with a human-readable message naming every bad field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Price(ContractPrice):
    """`price: {input_per_1m, output_per_1m}` in the YAML: the shared price and its one cost
    formula, strict like every config section, so an unknown key is an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


class LitellmParams(BaseModel):
    """Parameters handed to litellm; unknown keys are passed through untouched."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    api_base: str | None = None
    api_key: str | None = None

    def resolved(self) -> dict[str, Any]:
        """Params with ``os.environ/NAME`` secrets read from the environment."""
        out: dict[str, Any] = {}
        for key, value in self.model_dump(exclude_none=True).items():
            out[key] = resolve_secret(value) if isinstance(value, str) else value
        return out


class ModelConfig(_Strict):
    name: str = Field(min_length=1)
    litellm_params: LitellmParams
    price: Price = Price(input_per_1m=0.0, output_per_1m=0.0)
    max_output_tokens: int = Field(default=1024, ge=1)
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)
    fallbacks: list[str] = Field(default_factory=list)
    mode: Literal["chat", "embedding"] = "chat"
    # Whether the upstream honours `n`; None means "assume yes unless it is a local model".
    supports_n: bool | None = None
    # The name this model has in a router artifact, when it differs from `name`.
    router_name: str | None = None
    # Declared quality tier: the router's cold-start prior while the artifact does not know the model yet.
    tier: Literal["low", "mid", "high"] | None = None

    @property
    def is_local(self) -> bool:
        return self.litellm_params.model.startswith("local/")

    @property
    def native_n(self) -> bool:
        return self.supports_n if self.supports_n is not None else not self.is_local


class BudgetWindowConfig(_Strict):
    window: Literal["minute", "hour", "day", "week", "month", "total"]
    limit_usd: float = Field(ge=0)


class RateLimits(_Strict):
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)


class RoutingDefaults(_Strict):
    cost_weight: float | None = Field(default=None, ge=0)
    tolerance: float | None = Field(default=None, ge=0, le=1)
    # The share of `auto` requests served by a uniformly drawn candidate instead of the router's
    # pick, logged with its propensity, so a new router can be evaluated off-policy from the log.
    explore_rate: float | None = Field(default=None, ge=0, le=1)


class StrategyDefaults(_Strict):
    """Tenant default for test-time compute; `None` strategy means plain single calls."""

    model_config = ConfigDict(extra="allow")

    strategy: str | None = None
    # A configured chat model that grades candidates for `selector: reward`;
    # overrides `strategies.reward_model`.
    reward_model: str | None = None


class ApiKeyConfig(_Strict):
    """A key with its own budgets under the tenant."""

    hash: str
    budgets: list[BudgetWindowConfig] = Field(default_factory=list)

    @field_validator("hash")
    @classmethod
    def _check_hash(cls, value: str) -> str:
        return check_key_hash(value)


class TenantConfig(_Strict):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    api_key_hashes: list[str] = Field(default_factory=list)
    api_keys: list[ApiKeyConfig] = Field(default_factory=list)
    allowed_models: list[str] = Field(default_factory=lambda: ["*"])
    budgets: list[BudgetWindowConfig] = Field(default_factory=list)
    max_cost_per_request_usd: float | None = Field(default=None, ge=0)
    rate_limits: RateLimits = RateLimits()
    routing: RoutingDefaults = RoutingDefaults()
    strategy: StrategyDefaults = StrategyDefaults()
    # Keep prompt and response text in the request log; otherwise only their SHA-256.
    log_content: bool = False

    @field_validator("api_key_hashes")
    @classmethod
    def _check_hashes(cls, values: list[str]) -> list[str]:
        return [check_key_hash(v) for v in values]

    def allows(self, model_name: str) -> bool:
        return "*" in self.allowed_models or model_name in self.allowed_models


class RoutingProfile(_Strict):
    models: list[str] | None = None
    cost_weight: float | None = Field(default=None, ge=0)
    tolerance: float | None = Field(default=None, ge=0, le=1)
    explore_rate: float | None = Field(default=None, ge=0, le=1)  # overrides the tenant's
    # Offer models the router artifact does not know yet (scored by their cold-start prior).
    allow_unonboarded: bool = False


class RouterConfig(_Strict):
    artifact: str | None = None
    # None: the artifact's own default (its manifest places it between the cheapest and dearest model).
    default_cost_weight: float | None = Field(default=None, ge=0)
    profiles: dict[str, RoutingProfile] = Field(default_factory=dict)


class StrategiesConfig(_Strict):
    # A stopping-policy table fitted offline (`ttc strategies fit-policy`) for `adaptive`;
    # without one, adaptive stops on vote consistency.
    policy: str | None = None
    # An escalation model fitted offline (`ttc strategies fit-escalation`) for `cascade`:
    # P(the cheap model's answer is right), read from the answer. `cascade` needs one.
    escalation: str | None = None
    # Default generative reward model for `selector: reward` (a configured chat model, asked
    # for a 0-10 grade per candidate); a tenant's `strategy.reward_model` overrides it.
    reward_model: str | None = None


class ServerSettings(_Strict):
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    graceful_timeout_s: float = Field(default=30.0, ge=0)
    # Polling interval for noticing a changed config or router artifact on disk, so every
    # replica reloads on its own even when SIGHUP reaches only one process.
    watch_interval_s: float = Field(default=2.0, ge=0)
    # A bearer token /metrics requires (the admin key is accepted too); `os.environ/NAME` reads it
    # from the environment. Unset, /metrics is open, as Prometheus endpoints usually are inside a
    # cluster network; the Helm chart and the compose file set it, since the metrics name tenants
    # and their spend.
    metrics_token: str | None = Field(default=None, min_length=1)


class GatewayConfig(_Strict):
    models: list[ModelConfig] = Field(default_factory=list)
    tenants: list[TenantConfig] = Field(default_factory=list)
    ledger: LedgerSettings = LedgerSettings()
    admin_key_hash: str | None = None
    router: RouterConfig = RouterConfig()
    strategies: StrategiesConfig = StrategiesConfig()
    server: ServerSettings = ServerSettings()
    # One row per request (SQLite beside the ledger by default, or PostgreSQL).
    request_log: RequestLogSettings = RequestLogSettings()
    # Free-form section for LiteLLM-style files; accepted and ignored.
    litellm_settings: dict[str, Any] | None = None
    general_settings: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _accept_litellm_spelling(cls, data: Any) -> Any:
        if isinstance(data, dict) and "model_list" in data:
            data = dict(data)
            entries = data.pop("model_list") or []
            converted = []
            for entry in entries:
                if isinstance(entry, dict) and "model_name" in entry and "name" not in entry:
                    entry = dict(entry)
                    entry["name"] = entry.pop("model_name")
                    entry.pop("model_info", None)
                converted.append(entry)
            data["models"] = list(data.get("models") or []) + converted
        return data

    @field_validator("admin_key_hash")
    @classmethod
    def _check_admin(cls, value: str | None) -> str | None:
        return None if value is None else check_key_hash(value)

    @model_validator(mode="after")
    def _check_references(self) -> GatewayConfig:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate model names: {dupes}")
        known = set(names)
        for model in self.models:
            missing = [f for f in model.fallbacks if f not in known]
            if missing:
                raise ValueError(f"model {model.name!r} lists unknown fallbacks {missing}")
        chat = {m.name for m in self.models if m.mode == "chat"}
        reward_models = [("strategies.reward_model", self.strategies.reward_model)] + [
            (f"tenant {t.id!r} strategy.reward_model", t.strategy.reward_model) for t in self.tenants]
        for where, name in reward_models:
            if name is not None and name not in chat:
                raise ValueError(f"{where} {name!r} is not a configured chat model")
        ids = [t.id for t in self.tenants]
        if len(ids) != len(set(ids)):
            raise ValueError("duplicate tenant ids")
        seen: dict[str, str] = {}
        for tenant in self.tenants:
            for key_hash in tenant.api_key_hashes + [k.hash for k in tenant.api_keys]:
                if key_hash in seen and seen[key_hash] != tenant.id:
                    raise ValueError(f"an API key hash is shared by tenants {seen[key_hash]!r} and {tenant.id!r}")
                seen[key_hash] = tenant.id
        return self

    def model(self, name: str) -> ModelConfig | None:
        for model in self.models:
            if model.name == name:
                return model
        return None


def check_key_hash(value: str) -> str:
    prefix, _, digest = value.partition(":")
    if prefix != "sha256" or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest.lower()):
        raise ValueError("must look like 'sha256:<64 hex chars>' (run `ttc keys new` to make one)")
    return f"sha256:{digest.lower()}"


def resolve_secret(value: str) -> str:
    if value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX) :]
        secret = os.environ.get(name)
        if secret is None:
            raise ConfigError(f"environment variable {name!r} is not set (referenced as {value!r})")
        return secret
    return value


def format_validation_error(error: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  - {location}: {item['msg']}")
    return "\n".join(lines)


def parse_config(data: Any, source: str = "<memory>") -> GatewayConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {source}: the top level must be a mapping")
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, source)) from None
    problems = [p for p in (local_model_problem(m.name, m.litellm_params.model.split("/", 1)[1],
                                                   (m.litellm_params.model_extra or {}).get("model_path"))
                            for m in config.models if m.is_local) if p is not None]
    if problems:
        raise ConfigError("\n".join([f"invalid config {source}:", *(f"  - {p}" for p in problems)]))
    return config


def load_config(path: str | Path) -> GatewayConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"invalid YAML in {path}: {error}") from None
    return parse_config(data, str(path))
