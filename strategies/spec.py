"""The request-level strategy spec: `extra_body={"ttc": {...}}` merged over tenant defaults.

The gateway calls :func:`parse_spec` with the tenant's configured defaults and
the request's `ttc` object; a :class:`TTCSpecError` carries a message fit for
an OpenAI-format 400 error. Unknown keys are rejected so that typos
(`"strategey"`) fail loudly instead of silently running the default.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

StrategyName = Literal["single", "best_of_n", "refine", "scale", "adaptive", "cascade"]
SelectorName = Literal["majority", "judge", "verifier", "reward"]
STRATEGY_NAMES: tuple[str, ...] = ("single", "best_of_n", "refine", "scale", "adaptive", "cascade")


class TTCSpecError(ValueError):
    """Invalid `ttc` request object; the gateway answers 400 with this message."""


class TTCSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: StrategyName = "adaptive"
    # best_of_n: number of samples. adaptive: the most it may draw.
    n: int | None = Field(default=None, ge=1, le=64)
    selector: SelectorName = "majority"
    extractor: str = "auto"
    max_cost_per_request_usd: float | None = Field(default=None, gt=0)

    # Models. None means the gateway's routed model for the request.
    cheap_model: str | None = None
    strong_model: str | None = None
    judge_model: str | None = None
    # `selector: reward` without an injected scorer: a chat model used as a
    # generative reward model (one 0-10 grading call per candidate).
    reward_model: str | None = None
    draft_model: str | None = None
    critique_model: str | None = None
    revise_model: str | None = None
    # refine: per-round overrides, e.g. [{"critique": "big", "revise": "small"}].
    round_models: list[dict[str, str]] | None = None

    # Sampling. Best-of-N needs diverse samples, so a request at temperature 0
    # (or unset) samples at this temperature instead.
    sample_temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    judge_max_tokens: int = Field(default=512, ge=16)
    critique_max_tokens: int = Field(default=512, ge=16)
    # The reward model is asked for a bare score; a small cap keeps its
    # reserved worst case (paid once per candidate) close to its real cost.
    reward_max_tokens: int = Field(default=32, ge=4)
    # Output cap used for reservations when the request sets no max_tokens.
    default_max_tokens: int = Field(default=1024, ge=1)

    # refine
    rounds: int = Field(default=2, ge=0, le=8)

    # scale
    plan_max_tokens: int = Field(default=512, ge=16)
    max_subproblems: int = Field(default=4, ge=1, le=12)
    difficulty_source: Literal["fn", "llm"] = "fn"
    easy_threshold: float = Field(default=0.7, ge=0.0, le=1.0)
    system1_max_tokens: int = Field(default=256, ge=16)
    hard_strategy: Literal["best_of_n", "refine"] = "best_of_n"
    hard_n: int = Field(default=4, ge=1, le=16)

    # adaptive
    first_wave: int = Field(default=2, ge=1, le=16)
    wave: int = Field(default=1, ge=1, le=16)
    easy_single_threshold: float = Field(default=0.95, ge=0.0, le=1.0)
    hopeless_threshold: float = Field(default=0.05, ge=0.0, le=1.0)
    stop_threshold: float | None = Field(default=None, ge=0.0, le=1.0)

    # cascade: escalate to strong_model when the escalation model's P(cheap answer right) is below this.
    escalate_below: float = Field(default=0.5, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _check(self) -> "TTCSpec":
        from .extractors import extractor_names

        if self.extractor not in extractor_names():
            raise ValueError(f"unknown extractor {self.extractor!r}; known: {extractor_names()}")
        return self

    def max_n(self, default: int) -> int:
        return self.n if self.n is not None else default


def parse_spec(request_ttc: Any = None, defaults: dict[str, Any] | None = None) -> TTCSpec:
    """Tenant defaults, overridden key by key by the request's `ttc` object."""
    if request_ttc is not None and not isinstance(request_ttc, dict):
        raise TTCSpecError("'ttc' must be an object, e.g. {\"strategy\": \"best_of_n\", \"n\": 8}")
    merged = {**(defaults or {}), **(request_ttc or {})}
    try:
        return TTCSpec.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ())) or "ttc"
        raise TTCSpecError(f"invalid ttc.{loc}: {first.get('msg')}") from None


def forced_single_reason(*, tools: Any = None, n: int | None = None) -> str | None:
    """Why a request must run as `single` (None when it need not).

    A vote over tool calls has no clear meaning, and a client asking for n>1
    choices wants the raw samples, not one selected answer.
    """
    if tools:
        return "request has tools: runs as single"
    if n is not None and n > 1:
        return "request asks for n>1 choices: runs as single"
    return None
