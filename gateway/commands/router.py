"""`ttc router ...`: the router lab's commands, with `collect` calling models through our upstream layer."""

from __future__ import annotations

from pathlib import Path

from router.lab.cli import Models
from router.lab.collect import Complete, CompletionOutcome

from gateway.config import GatewayConfig, load_config


def upstream_completer(config: GatewayConfig) -> Complete:
    """router.lab.collect's `complete` callable over the config's models (retries, fallbacks, our prices)."""
    from gateway.accounting import output_cap
    from gateway.tokens import count_text_tokens
    from gateway.upstream import Upstreams, call_with_fallbacks, fallback_chain, usage_of

    upstreams = Upstreams()

    async def complete(model_name: str, messages: list[dict[str, str]], max_tokens: int) -> CompletionOutcome:
        model = config.model(model_name)
        if model is None:
            raise KeyError(f"model {model_name!r} is not in the config")
        response, used = await call_with_fallbacks(
            fallback_chain(config, model),
            lambda m: upstreams.complete(m, {"messages": messages, "max_tokens": output_cap(m, max_tokens)}),
            lambda _m, _e: None,
        )
        text = str(((response.get("choices") or [{}])[0].get("message") or {}).get("content") or "")
        prompt_tokens, completion_tokens = usage_of(response)
        if not response.get("usage"):
            completion_tokens = count_text_tokens(used.litellm_params.model, text)
        return CompletionOutcome(text=text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                                 cost_usd=used.price.cost_usd(prompt_tokens, completion_tokens))

    return complete


class GatewayRouterBackend:
    """router.lab.cli.RouterBackend over a gateway config: its chat models, called directly (no tenant, no ledger)."""

    def open_models(self, config: Path) -> Models:
        cfg = load_config(config)  # ConfigError is a ValueError: the lab reports it and exits 2
        chat = tuple(m.name for m in cfg.models if m.mode == "chat")
        return Models(complete=upstream_completer(cfg), chat_models=chat)

