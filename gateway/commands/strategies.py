"""`ttc strategies ...`: the strategies package's CLI, with live models from a gateway config."""

from __future__ import annotations

from typing import Any

from strategies.cli import app, set_live_backend

from gateway.config import load_config


def live_generator(config_path: str) -> Any:
    """A Generator over the config's models, called directly (no tenant, no ledger: offline jobs)."""
    from gateway.strategy_runner import GatewayGenerator
    from gateway.upstream import Upstreams

    config = load_config(config_path)
    chat_models = [m for m in config.models if m.mode == "chat"]
    if not chat_models:
        raise SystemExit(f"{config_path} defines no chat models")
    return GatewayGenerator(config, Upstreams(), chat_models[0])


set_live_backend(live_generator)

__all__ = ["app"]
