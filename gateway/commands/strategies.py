"""`ttc strategies ...`: the strategies lab's commands, with live models from a gateway config."""

from __future__ import annotations

from pathlib import Path

from strategies import Generator

from gateway.config import load_config


class GatewayLabBackend:
    """strategies.lab.cli.LabBackend over a gateway config: a Generator over its first chat model,
    called directly (no tenant, no ledger: offline jobs)."""

    def generator(self, config: Path) -> Generator:
        from gateway.pipeline.calls import UpstreamCalls
        from gateway.pipeline.generator import GatewayGenerator
        from gateway.upstream import Upstreams

        cfg = load_config(config)
        chat_models = [m for m in cfg.models if m.mode == "chat"]
        if not chat_models:
            raise SystemExit(f"{config} defines no chat models")
        return GatewayGenerator(UpstreamCalls(cfg, Upstreams()), chat_models[0])
