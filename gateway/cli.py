"""The `ttc` command: serve the gateway, make keys, and the offline router/strategy jobs."""

from __future__ import annotations

import logging
import sys
from typing import Optional

import typer

from contracts.environment import apply_environment_defaults

from gateway.auth import new_key
from gateway.config import ConfigError

app = typer.Typer(help="ttc-gateway: an OpenAI-compatible LLM gateway with learned routing, test-time compute and budgets.", no_args_is_help=True, add_completion=False)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@app.command()
def serve(
    config: Optional[str] = typer.Option(None, "--config", "-c", help="Config YAML; omit to serve the built-in local models."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8000, help="Port to bind."),
    workers: int = typer.Option(1, min=1, help="Worker processes."),
    graceful_timeout: Optional[float] = typer.Option(None, help="Seconds to finish in-flight requests on SIGTERM (default: config server.graceful_timeout_s)."),
    log_level: str = typer.Option("info", help="Log level."),
) -> None:
    """Start the gateway."""
    from gateway.defaults import demo_key
    from gateway.server import serve as run

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if config is None:
        typer.echo(f"ttc-gateway: serving built-in defaults (local models smollm2-135m, gemma3-270m; embedded ledger)\n"
                   f"demo API key: {demo_key()}\n"
                   f"try: curl http://{host}:{port}/v1/models -H 'Authorization: Bearer {demo_key()}'")
    try:
        run(config, host, port, workers, graceful_timeout, log_level)
    except ConfigError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None


@keys_app.command("new")
def keys_new() -> None:
    """Print a new API key and the hash to put in the config."""
    key, key_hash = new_key()
    typer.echo(f"key:  {key}\nhash: {key_hash}")


@app.command("check-config")
def check_config(path: str) -> None:
    """Validate a config file and print what it defines."""
    from gateway.config import load_config

    try:
        cfg = load_config(path)
    except ConfigError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    typer.echo(f"ok: {len(cfg.models)} models, {len(cfg.tenants)} tenants, ledger={'redis' if cfg.ledger.redis_url else 'sqlite'}")


def main() -> None:
    apply_environment_defaults()
    from router.lab.cli import make_app as make_router_app

    from gateway.commands.router import GatewayRouterBackend

    app.add_typer(make_router_app(GatewayRouterBackend()), name="router")
    from strategies.lab.cli import make_app as make_strategies_app

    from gateway.commands.strategies import GatewayLabBackend

    app.add_typer(make_strategies_app(GatewayLabBackend()), name="strategies")
    from gateway.commands.requests import app as requests_app

    app.add_typer(requests_app, name="requests")
    app(prog_name="ttc")


if __name__ == "__main__":
    sys.exit(main())
