"""`ttc router ...`: the router lab's commands, with `collect` calling models through our upstream layer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from contracts.prices import Price
from router.lab.cli import Models
from router.lab.collect import Complete, CompletionOutcome

from gateway.commands.router_charged import LedgerChargedModels, open_charged
from gateway.config import GatewayConfig, load_config


def upstream_completer(config: GatewayConfig) -> Complete:
    """router.lab.collect's `complete` callable: one call to a configured model through the
    gateway's upstream layer (retries, fallbacks, our prices), with no tenant and no ledger."""
    from gateway.pipeline.calls import UpstreamCalls
    from gateway.pipeline.generator import GatewayGenerator
    from gateway.upstream import Upstreams

    calls = UpstreamCalls(config, Upstreams())

    async def complete(model_name: str, messages: list[dict[str, str]], max_tokens: int) -> CompletionOutcome:
        model = config.model(model_name)
        if model is None:
            raise KeyError(f"model {model_name!r} is not in the config")
        (answer,) = await GatewayGenerator(calls, model).generate(list(messages), 1, max_tokens=max_tokens, role="collect")
        return CompletionOutcome(text=answer.text, prompt_tokens=answer.prompt_tokens,
                                 completion_tokens=answer.completion_tokens, cost_usd=answer.cost_usd)

    return complete


class GatewayRouterBackend:
    """router.lab.cli.RouterBackend over a gateway config: its chat models, called directly (no tenant, no ledger)."""

    def open_models(self, config: Path) -> Models:
        cfg = load_config(config)  # ConfigError is a ValueError: the lab reports it and exits 2
        chat = tuple(m.name for m in cfg.models if m.mode == "chat")
        prices = {m.name: Price(input_per_1m=m.price.input_per_1m, output_per_1m=m.price.output_per_1m) for m in cfg.models}
        return Models(complete=upstream_completer(cfg), chat_models=chat, prices=prices)


    def open_charged(self, config: Path, tenant: str, budget_usd: float) -> LedgerChargedModels:
        """router.lab.label.LabelBackend: the config's models charged to `tenant`, capped by the ledger."""
        return open_charged(config, tenant, budget_usd)

    def stored_feedback(self, config: Path, requests: Sequence[tuple[str, str]]) -> dict[str, float]:
        """router.lab.label.LabelBackend: feedback scores from the config's request log."""
        from gateway.commands.requests import open_store

        store = open_store(str(config))
        try:
            found = ((request_id, store.get(request_id, tenant)) for tenant, request_id in requests)
            return {request_id: hit[1].score for request_id, hit in found if hit is not None and hit[1] is not None}
        finally:
            store.close()
