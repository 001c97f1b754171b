"""`ttc router ...`: the router package's offline job, with `collect` wired to our upstream layer."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from router.cli import app as router_app

from gateway.config import ConfigError, GatewayConfig, load_config

app = typer.Typer(help=router_app.info.help, no_args_is_help=True, add_completion=False)
for _info in router_app.registered_commands:
    _name = _info.name or (_info.callback.__name__ if _info.callback else "")
    if _name != "collect":  # replaced below by the config-driven version
        app.registered_commands.append(_info)


def upstream_completer(config: GatewayConfig) -> Any:
    """router.collect's `complete` callable over the config's models (retries, fallbacks, our prices)."""
    from router.collect import CompletionOutcome

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


@app.command()
def collect(
    config: Annotated[Path, typer.Option(help="gateway config naming the models to run")],
    prompts: Annotated[Path, typer.Option(help="JSONL of prompts with reference answers")],
    out: Annotated[Path, typer.Option(help="outcome JSONL to write")],
    models: Annotated[Optional[str], typer.Option(help="comma-separated model names (default: every chat model)")] = None,
    grader: Annotated[str, typer.Option(help="numeric | choice | exact | contains | module:function")] = "numeric",
    concurrency: Annotated[int, typer.Option(min=1)] = 2,
    budget_usd: Annotated[Optional[float], typer.Option(help="stop starting calls once this much is spent")] = None,
    max_tokens: Annotated[int, typer.Option(min=1)] = 256,
    limit: Annotated[Optional[int], typer.Option(help="first N prompts only")] = None,
) -> None:
    """Run the configured models on labeled prompts, grade the answers, write outcome rows."""
    from router.collect import collect as run_collect
    from router.collect import load_labeled_prompts
    from router.graders import resolve_grader
    from router.outcomes import write_outcomes

    try:
        cfg = load_config(config)
    except ConfigError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    names = [m.strip() for m in models.split(",")] if models else [m.name for m in cfg.models if m.mode == "chat"]
    unknown = [n for n in names if cfg.model(n) is None]
    if unknown:
        typer.echo(f"unknown models {unknown}; the config has {[m.name for m in cfg.models]}", err=True)
        raise typer.Exit(2)
    items = load_labeled_prompts(prompts, limit)
    report = asyncio.run(run_collect(items, names, upstream_completer(cfg), resolve_grader(grader), concurrency=concurrency,
                                     budget_usd=budget_usd, max_tokens=max_tokens))
    write_outcomes(out, report.rows)
    typer.echo(json.dumps(report.model_dump(exclude={"rows"}) | {"rows": len(report.rows)}, indent=2))
