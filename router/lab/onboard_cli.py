"""`ttc router probes` and `ttc router onboard`: a new model joins a trained router from the probe set.

`onboard` calls the new model through the caller's `RouterBackend` (the gateway's upstream layer,
with the config's prices and a budget cap, as `collect` does; with `--tenant`, every call is also
held and charged on that tenant's ledger account, as `label`'s are), or reads outcome rows already
collected (`--outcomes`), and writes a new artifact version with only that model's column fitted.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, Protocol

import typer

from contracts.prices import Price
from router.lab.collect import Complete

if TYPE_CHECKING:
    from contracts.outcomes import OutcomeRow
    from router.lab.label import ChargedModels
    from router.lab.probes import Probe


class OpenedModels(Protocol):
    """What `onboard` needs of router.lab.cli.Models (structural, so this module does not import the CLI)."""

    @property
    def complete(self) -> Complete: ...
    @property
    def chat_models(self) -> tuple[str, ...]: ...
    @property
    def prices(self) -> dict[str, Price]: ...


class ModelBackend(Protocol):
    def open_models(self, config: Path) -> OpenedModels: ...

    def open_charged(self, config: Path, tenant: str, budget_usd: float) -> ChargedModels: ...


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def probes_cmd(
    artifact: Annotated[Path, typer.Option(help="artifact directory trained with --probes")],
    out: Annotated[Path, typer.Option(help="JSONL to write: prompt, answer, grader, task, id per probe")],
) -> None:
    """Write an artifact's probe set: the prompts a new model answers to be onboarded."""
    from router.lab.probes import read_probes

    try:
        probes = read_probes(artifact)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for probe in probes:
            handle.write(probe.model_dump_json(exclude_none=True) + "\n")
    typer.echo(json.dumps({"probes": len(probes), "with_answers": sum(p.answer is not None for p in probes),
                           "out": str(out)}))


def _with_references(probes: list[Probe], references: Path | None, grader: str) -> list[Probe]:
    from router.lab.outcomes import prompt_key
    from router.lab.probes import load_references

    refs = load_references(references, grader)
    out = []
    for probe in probes:
        item, item_grader = refs.get(prompt_key(probe.prompt), (None, None))
        if item is not None:
            probe = probe.model_copy(update={"answer": item.answer, "grader": item_grader})
        out.append(probe if probe.grader or probe.answer is None else probe.model_copy(update={"grader": grader}))
    return out


async def _run_probes(probes: list[Probe], model: str, complete: Complete, concurrency: int, budget_usd: float | None,
                      max_tokens: int) -> tuple[list[OutcomeRow], dict[str, float | int]]:
    """Run and grade the probes, one `collect` per grader (probes may mix tasks)."""
    from router.lab.collect import LabeledPrompt, collect
    from router.lab.graders import resolve_grader

    rows: list[OutcomeRow] = []
    totals: dict[str, float | int] = {"calls": 0, "failed": 0, "skipped_for_budget": 0, "spent_usd": 0.0}
    by_grader: dict[str, list[LabeledPrompt]] = {}
    for p in probes:
        assert p.answer is not None and p.grader is not None
        by_grader.setdefault(p.grader, []).append(LabeledPrompt(prompt=p.prompt, answer=p.answer, task=p.task, id=p.id))
    for name, items in sorted(by_grader.items()):
        left = None if budget_usd is None else max(0.0, budget_usd - float(totals["spent_usd"]))
        report = await collect(items, [model], complete, resolve_grader(name), concurrency=concurrency,
                               budget_usd=left, max_tokens=max_tokens, progress=False)
        rows += report.rows
        for key in ("calls", "failed", "skipped_for_budget"):
            totals[key] = int(totals[key]) + int(getattr(report, key))
        totals["spent_usd"] = float(totals["spent_usd"]) + report.spent_usd
    return rows, totals


def _run_charged(backend: ModelBackend, config: Path, tenant: str, budget_usd: float | None, model: str, probes: list[Probe],
                 concurrency: int, max_tokens: int) -> tuple[list[OutcomeRow], dict[str, float | int]]:
    if budget_usd is None:
        _fail("--tenant charges the probe calls to a ledger: give the run's cap with --budget-usd", code=2)
    try:
        charged = backend.open_charged(config, tenant, budget_usd)
    except (OSError, ValueError) as exc:
        _fail(str(exc), code=2)
    if model not in charged.chat_models:
        _fail(f"tenant {tenant!r} may not use {model!r}; the chat models it may use are {list(charged.chat_models)}", code=2)

    async def run() -> tuple[list[OutcomeRow], dict[str, float | int]]:
        try:
            rows, spend = await _run_probes(probes, model, charged.complete, concurrency, budget_usd, max_tokens)
            return rows, spend | {"charged_usd": await charged.spent_usd()}
        finally:
            await charged.aclose()

    return asyncio.run(run())


def onboard_command(backend: ModelBackend | None) -> Callable[..., None]:
    def onboard(
        artifact: Annotated[Path, typer.Option(help="trained artifact directory (with a probe set)")],
        model: Annotated[str, typer.Option(help="the config's name of the model to add")],
        config: Annotated[Path, typer.Option(help="gateway config defining the model and its price")],
        out: Annotated[Path, typer.Option(help="artifact directory to write (may be --artifact itself)")],
        outcomes: Annotated[Path | None, typer.Option(help="outcome rows already collected for the model, instead of running the probes")] = None,
        references: Annotated[Path | None, typer.Option(help="labeled-prompt JSONL with reference answers for probes stored without one")] = None,
        grader: Annotated[str, typer.Option(help="grader for references that name none: numeric | choice | exact | contains | module:function")] = "numeric",
        max_tokens: Annotated[int, typer.Option(min=1)] = 256,
        concurrency: Annotated[int, typer.Option(min=1)] = 2,
        budget_usd: Annotated[float | None, typer.Option(help="stop starting calls once this much is spent")] = None,
        tenant: Annotated[str | None, typer.Option(help="charge the probe calls to this tenant's ledger account, within its budgets "
                                                      "and allowed models and capped at --budget-usd (required with it)")] = None,
        save_outcomes: Annotated[Path | None, typer.Option(help="also write the graded probe answers here")] = None,
        seed: Annotated[int, typer.Option()] = 0,
    ) -> None:
        """Add a model to a trained router from its answers to the probe set; everything else stays frozen."""
        from contracts.outcomes import OutcomeFileError, read_outcomes, write_outcomes
        from router.lab.onboard import onboard as run_onboard
        from router.lab.probes import read_probes

        if backend is None:
            _fail("onboard reads the model's price from a gateway config: run `ttc router onboard --config ...`", code=2)
        try:
            opened = backend.open_models(config)
        except (OSError, ValueError) as exc:
            _fail(str(exc), code=2)
        if model not in opened.chat_models or model not in opened.prices:
            _fail(f"{model!r} is not a chat model of {config}; its chat models are {list(opened.chat_models)}", code=2)
        spend: dict[str, float | int] = {}
        if outcomes is not None:
            try:
                rows = [r for r in read_outcomes(outcomes) if r.model == model]
            except (OSError, OutcomeFileError) as exc:
                _fail(str(exc))
        else:
            try:
                probes = _with_references(read_probes(artifact), references, grader)
            except (OSError, ValueError) as exc:
                _fail(str(exc))
            missing = sum(p.answer is None for p in probes)
            if missing:
                _fail(f"{missing} of {len(probes)} probes have no reference answer: pass --references (labeled prompts) "
                      "or --outcomes (rows already collected)")
            if tenant is None:
                rows, spend = asyncio.run(_run_probes(probes, model, opened.complete, concurrency, budget_usd, max_tokens))
            else:
                rows, spend = _run_charged(backend, config, tenant, budget_usd, model, probes, concurrency, max_tokens)
            if save_outcomes:
                write_outcomes(save_outcomes, rows)
        if len(rows) < 2:
            _fail(f"only {len(rows)} outcome row(s) for {model!r}: onboarding needs at least 2")
        try:
            result = run_onboard(artifact, model, rows, opened.prices[model], out, seed=seed)
        except (OSError, ValueError) as exc:
            _fail(str(exc))
        typer.echo(json.dumps(result | ({"probe_calls": spend} if spend else {}), indent=2, default=float))

    return onboard
