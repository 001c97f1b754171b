"""`ttc router ...` (also `python -m router ...`): import, train, eval, calibrate, collect.

`make_app(backend)` builds the command group. Everything but `collect` runs on
files alone; `collect` calls models, and the lab never imports the gateway
(dependencies point one way), so the caller passes a `RouterBackend`: the
gateway implements it over its upstream layer (gateway/commands/router.py) and
mounts `make_app(<its backend>)` as `ttc router`; `python -m router` passes
none, and `collect` then says where to run it.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, NoReturn, Protocol

import typer

from contracts.environment import apply_environment_defaults
from contracts.prices import Price
from router.lab.collect import Complete
from router.lab.flywheel_cli import register as register_flywheel
from router.lab.onboard_cli import onboard_command, probes_cmd

DEFAULT_DATA_DIR = Path(os.environ.get("TTC_SHARED_DATA", "../shared/data"))
HELP = "Learned router: offline data, training and evaluation."


@dataclass(frozen=True)
class Models:
    """What a backend opened from a config: the models `collect` may call, and how."""

    complete: Complete  # router.lab.collect's async callable (model, messages, max_tokens) -> CompletionOutcome
    chat_models: tuple[str, ...]  # the config's chat model names; `collect` runs all of them unless told otherwise
    prices: dict[str, Price] = field(default_factory=dict)  # the config's price per model (`onboard` records it)


class RouterBackend(Protocol):
    """What the lab needs from a serving stack, which it must not import."""

    def open_models(self, config: Path) -> Models:
        """The models a config file defines. Raise ValueError, with a message for the user, for a config it cannot use."""
        ...


def make_app(backend: RouterBackend | None = None) -> typer.Typer:
    """The `router` command group; without a backend, `collect` exits 2 with a message naming `ttc router collect`."""
    app = typer.Typer(name="router", help=HELP, no_args_is_help=True, add_completion=False)
    # Every command runs with the process defaults (offline hub, litellm's local price map), however
    # the app was started: `python -m router`, mounted as `ttc router`, or invoked in-process.
    app.callback()(apply_environment_defaults)
    app.command("import")(import_cmd)
    app.command()(train)
    app.command("eval")(eval_cmd)
    app.command()(calibrate)
    app.command()(_collect_command(backend))
    register_flywheel(app, backend)
    app.command("probes")(probes_cmd)
    app.command()(onboard_command(backend))
    return app


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def import_cmd(
    source: Annotated[str, typer.Option(help="routellm-gsm8k | routellm-mmlu | llmrouter | routerarena")],
    out_dir: Annotated[Path, typer.Option("--out-dir", help="writes train.jsonl, test.jsonl, prices.json")],
    data_dir: Annotated[Path, typer.Option(help="the shared data folder")] = DEFAULT_DATA_DIR,
    test_fraction: Annotated[float, typer.Option(min=0.01, max=0.99)] = 0.5,
    seed: Annotated[int, typer.Option()] = 0,
    max_prompts: Annotated[int | None, typer.Option(help="seeded subset of prompts (for quick runs)")] = None,
) -> None:
    """Convert a public outcome set into train/test JSONL with no shared prompt."""
    from router.lab.importers import SOURCES, run_import

    if source not in SOURCES:
        _fail(f"unknown source {source!r}; choose one of {', '.join(sorted(SOURCES))}")
    if not data_dir.exists():
        _fail(f"data dir {data_dir} does not exist")
    result = run_import(source, data_dir, out_dir, test_fraction=test_fraction, seed=seed, max_prompts=max_prompts)
    typer.echo(result.model_dump_json(indent=2))


def train(
    data: Annotated[Path, typer.Option(help="outcome JSONL")],
    out: Annotated[Path, typer.Option(help="artifact directory")],
    prices: Annotated[Path | None, typer.Option(help="{model: {input_per_1m, output_per_1m}} JSON; default: prices.json beside --data")] = None,
    featurizer: Annotated[str, typer.Option(help="minilm-int8 (MiniLM via ONNX Runtime, int8) | minilm-onnx (fp32) | minilm (torch) | static | static-proj | minilm-only | static-only")] = "minilm-int8",
    embedding_model: Annotated[str, typer.Option(help="sentence-transformers name or path")] = "all-MiniLM-L6-v2",
    cv_folds: Annotated[int, typer.Option(min=2)] = 5,
    seed: Annotated[int, typer.Option()] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="write {artifact, version, cv, data_sha256}")] = None,
    aux: Annotated[list[str] | None, typer.Option(help="auxiliary difficulty regressor(s), e.g. gsm8k-steps (repeatable)")] = None,
    aux_data: Annotated[Path, typer.Option(help="public data directory for --aux")] = Path("../shared/data"),
    exclude_prompts: Annotated[Path | None, typer.Option(help="outcome JSONL (e.g. the test split) whose prompts --aux data must not contain")] = None,
    task_prior: Annotated[bool, typer.Option(help="stack a task prior when rows carry task labels (kept only if CV improves)")] = True,
    select_by: Annotated[str, typer.Option(help="candidate selection: aiq (out-of-fold routing AIQ on train) | brier")] = "aiq",
    proj_corpus: Annotated[list[str] | None, typer.Option(help="unlabeled corpus for the static-proj map, e.g. gsm8k-train (repeatable; read from --aux-data)")] = None,
    token_bag: Annotated[str, typer.Option(help="static and ONNX featurizers: LSA of the token bag, auto (kept if CV improves) | on | off")] = "auto",
    max_tokens: Annotated[int | None, typer.Option(min=8, help="ONNX featurizers: truncate prompts to this many tokens (default 128)")] = None,
    probes: Annotated[int, typer.Option(min=0, help="probe set size for onboarding new models (0: none)")] = 100,
    probe_references: Annotated[Path | None, typer.Option(help="labeled-prompt JSONL with reference answers; probes are then chosen among its prompts")] = None,
    probe_grader: Annotated[str, typer.Option(help="grader for the probes' references that name none")] = "numeric",
    init: Annotated[Path | None, typer.Option(help="warm start: a champion artifact whose featurizer and kept training rows are combined with --data")] = None,
    source_weight: Annotated[list[str] | None, typer.Option(help="gold=W, feedback=W or judge=W (repeatable; defaults 1, 0.7, 0.4)")] = None,
    calibration: Annotated[Path | None, typer.Option(help="`ttc router label` report: the judge's weight follows its measured agreement")] = None,
    keep_rows: Annotated[bool, typer.Option(help="keep the training rows in the artifact, for a later --init (implied by --init)")] = False,
) -> None:
    """Fit quality and length predictors; write a versioned artifact."""
    from router.lab.importers import read_prices
    from contracts.outcomes import OutcomeFileError, read_outcomes
    from router.lab.train import TrainConfig, train_router

    try:
        rows = read_outcomes(data)
    except (OSError, OutcomeFileError) as exc:
        _fail(str(exc))
    raw_rows = rows
    if init or source_weight or calibration or any(r.source not in (None, "gold") for r in rows):
        from router.lab.sources import source_weighted_training

        try:
            raw_rows, rows, inherited = source_weighted_training(rows, init, source_weight or [], calibration)
        except (OSError, ValueError) as exc:
            _fail(str(exc))
        featurizer, embedding_model = inherited.get("featurizer", featurizer), inherited.get("embedding_model", embedding_model)
    price_file = prices or (data.parent / "prices.json")
    price_map = read_prices(price_file) if price_file.exists() else None
    if select_by not in ("aiq", "brier"):
        _fail(f"--select-by must be aiq or brier, not {select_by!r}")
    if token_bag not in ("auto", "on", "off"):
        _fail(f"--token-bag must be auto, on or off, not {token_bag!r}")
    config = TrainConfig(featurizer=featurizer, embedding_model=embedding_model, cv_folds=cv_folds, seed=seed,
                         task_prior=task_prior, aux=aux or [], aux_data_dir=str(aux_data) if aux or proj_corpus else None,
                         select_by=select_by, projection_corpus=proj_corpus or [], token_bag=token_bag,
                         max_tokens=max_tokens, probes=probes,
                         probe_references=str(probe_references) if probe_references else None, probe_grader=probe_grader)
    try:
        excluded = [r.prompt for r in read_outcomes(exclude_prompts)] if exclude_prompts else []
    except (OSError, OutcomeFileError) as exc:
        _fail(str(exc))
    if (aux or proj_corpus) and not aux_data.is_dir():
        _fail(f"--aux-data {aux_data} is not a directory")
    try:
        result = train_router(rows, out, price_map, config, progress=True, exclude_prompts=excluded)
    except ValueError as exc:
        _fail(str(exc))
    if keep_rows or init:
        from router.lab.sources import keep_rows as store_rows

        store_rows(out, raw_rows)
    selected = result.cv.get("selected", {})
    typer.echo(f"artifact {result.artifact} version {result.version}; selected {selected}")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result.model_dump(), indent=2) + "\n", encoding="utf-8")


def eval_cmd(
    artifact: Annotated[Path, typer.Option(help="artifact directory")],
    data: Annotated[Path, typer.Option(help="held-out outcome JSONL")],
    report: Annotated[Path, typer.Option(help="markdown report path (a PNG is written beside it)")],
    train_data: Annotated[Path | None, typer.Option("--train", help="training rows for the baselines; default: train.jsonl beside --data")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="machine-readable result")] = None,
    title: Annotated[str, typer.Option()] = "Router evaluation",
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Held-out evaluation against baselines. Exit code 2 if a test prompt was trained on."""
    from router.lab.evaluate import LeakageError, evaluate
    from contracts.outcomes import OutcomeFileError, read_outcomes
    from router.lab.report import write_report

    train_path = train_data or (data.parent / "train.jsonl")
    if not train_path.exists():
        _fail(f"training rows {train_path} not found: pass --train (the baselines are fitted on them)")
    try:
        test_rows, train_rows = read_outcomes(data), read_outcomes(train_path)
    except (OSError, OutcomeFileError) as exc:
        _fail(str(exc))
    try:
        result = evaluate(artifact, test_rows, train_rows, seed=seed, progress=lambda msg: typer.echo(f"... {msg}", err=True))
    except LeakageError as exc:
        _fail(f"leakage: {exc}", code=2)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    write_report(result, report, title)
    payload = result.public_json()
    typer.echo(json.dumps(payload, indent=2))
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def calibrate(
    artifact: Annotated[Path, typer.Option(help="artifact directory")],
    prompts: Annotated[Path, typer.Option(help="JSONL with a `prompt` field (outcome rows work)")],
    strong_share: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="target share of --strong-model")] = None,
    strong_model: Annotated[str | None, typer.Option(help="default: the dearest model")] = None,
    target_cost: Annotated[float | None, typer.Option(help="target mean expected cost per prompt, USD")] = None,
    json_out: Annotated[Path | None, typer.Option("--json")] = None,
) -> None:
    """Pick the cost weight that hits a strong-model share or mean cost on a prompt sample."""
    from router.api import load_router
    from router.lab.calibrate import calibrate as run_calibration
    from router.lab.calibrate import load_prompts

    if (strong_share is None) == (target_cost is None):
        _fail("give exactly one of --strong-share or --target-cost")
    router = load_router(artifact, embedding_cache=True)
    sample = load_prompts(prompts)
    if not sample:
        _fail(f"{prompts} has no prompts")
    try:
        result = run_calibration(router, sample, strong_model=strong_model, strong_share=strong_share,
                                 target_cost_usd=target_cost)
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(result.model_dump_json(indent=2))
    if json_out:
        json_out.write_text(result.model_dump_json(indent=2) + "\n", encoding="utf-8")


def _collect_command(backend: RouterBackend | None) -> Callable[..., None]:
    def collect(
        config: Annotated[Path, typer.Option(help="gateway config naming the models to run")],
        prompts: Annotated[Path, typer.Option(help="JSONL of prompts with reference answers")],
        out: Annotated[Path, typer.Option(help="outcome JSONL to write")],
        models: Annotated[str | None, typer.Option(help="comma-separated model names (default: every chat model)")] = None,
        grader: Annotated[str, typer.Option(help="numeric | choice | exact | contains | module:function")] = "numeric",
        concurrency: Annotated[int, typer.Option(min=1)] = 2,
        budget_usd: Annotated[float | None, typer.Option(help="stop starting calls once this much is spent")] = None,
        max_tokens: Annotated[int, typer.Option(min=1)] = 256,
        limit: Annotated[int | None, typer.Option(help="first N prompts only")] = None,
    ) -> None:
        """Run the configured models on labeled prompts, grade the answers, write outcome rows."""
        from router.lab.collect import collect as run_collect
        from router.lab.collect import load_labeled_prompts
        from router.lab.graders import resolve_grader
        from contracts.outcomes import write_outcomes

        if backend is None:
            _fail("collect calls models through the gateway's upstream layer: run `ttc router collect --config ...`",
                  code=2)
        try:
            opened = backend.open_models(config)
            grade = resolve_grader(grader)
        except (OSError, ValueError) as exc:
            _fail(str(exc), code=2)
        names = [m.strip() for m in models.split(",") if m.strip()] if models else list(opened.chat_models)
        unknown = [n for n in names if n not in opened.chat_models]
        if not names or unknown:
            _fail(f"unknown models {unknown}; the config's chat models are {list(opened.chat_models)}", code=2)
        items = load_labeled_prompts(prompts, limit)
        report = asyncio.run(run_collect(items, names, opened.complete, grade, concurrency=concurrency,
                                         budget_usd=budget_usd, max_tokens=max_tokens))
        write_outcomes(out, report.rows)
        typer.echo(json.dumps(report.model_dump(exclude={"rows"}) | {"rows": len(report.rows)}, indent=2))

    return collect


def main() -> None:
    """`python -m router`: every command that needs no gateway."""
    make_app()(prog_name="python -m router")
