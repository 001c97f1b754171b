"""`ttc router compare | promote | label | flywheel`: learning from your own traffic.

`compare` and `promote` run on files alone; `label` and `flywheel` call models, so they need a
backend implementing router.lab.label.LabelBackend (the gateway's, as `ttc router`).

Exit codes: 0 done (for promote: promoted), 1 bad input, 2 needs the gateway / leakage,
3 promote refused by the gate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, cast, get_args

import typer
from pydantic import BaseModel

if TYPE_CHECKING:
    from router.lab.compare import CompareResult

REFUSED = 3


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _emit(payload: BaseModel, out: Path | None) -> None:
    text = payload.model_dump_json(indent=2)
    typer.echo(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")


def _run_compare(champion: Path, challenger: Path, data: Path, from_log: Path | None, log_labels: Path | None,
                 method: str, n_boot: int, seed: int, gate_metric: str, alpha: float, rounds: int,
                 cost_weight: float | None) -> CompareResult:
    from contracts.outcomes import OutcomeFileError, read_outcomes
    from router.lab.compare import compare
    from router.lab.evaluate import LeakageError
    from router.lab.logdata import LogFileError, read_log

    for path in (champion, challenger):
        if not (path / "manifest.json").exists():
            _fail(f"{path} is not a router artifact (no manifest.json)")
    try:
        heldout = read_outcomes(data)
        log = read_log(from_log) if from_log else None
        labels = read_outcomes(log_labels) if log_labels else []
    except (OSError, OutcomeFileError, LogFileError) as exc:
        _fail(str(exc))
    try:
        return compare(champion, challenger, heldout, log=log, log_labels=labels, offpolicy_method=method,
                       n_boot=n_boot, seed=seed, cost_weight=cost_weight, gate_metric=gate_metric,
                       alpha_family=alpha, rounds=rounds)
    except LeakageError as exc:
        _fail(f"leakage: {exc}", code=2)
    except ValueError as exc:
        _fail(str(exc))


Champion = Annotated[Path, typer.Option(help="the serving artifact")]
Challenger = Annotated[Path, typer.Option(help="the candidate artifact")]
Heldout = Annotated[Path, typer.Option(help="labelled held-out outcome JSONL (complete rows, never trained on)")]
FromLog = Annotated[Path | None, typer.Option(help="`ttc requests export` file: off-policy estimate from its exploration traffic")]
LogLabels = Annotated[Path | None, typer.Option(help="outcome rows labelling the log's served answers (from `label`; id = request id)")]
Method = Annotated[str, typer.Option(help="off-policy estimator: dr | ips")]
Boot = Annotated[int, typer.Option(min=100, help="paired bootstrap draws")]
Seed = Annotated[int, typer.Option()]
GateMetric = Annotated[str, typer.Option(help="what the gate requires to improve: aiq | apgr | quality_at_matched_cost")]
Alpha = Annotated[float, typer.Option(min=0.0001, max=0.5, help="family-wise error rate of the gate")]
Rounds = Annotated[int, typer.Option(min=1, help="comparisons planned (flywheel rounds): alpha is split over them")]
CostWeight = Annotated[float | None, typer.Option(help="cost weight the routers serve at (default: each artifact's)")]


def compare_cmd(champion: Champion, challenger: Challenger, data: Heldout, from_log: FromLog = None,
                log_labels: LogLabels = None, method: Method = "dr", n_boot: Boot = 2000, seed: Seed = 0,
                gate_metric: GateMetric = "aiq", alpha: Alpha = 0.05, rounds: Rounds = 12, cost_weight: CostWeight = None,
                json_out: Annotated[Path | None, typer.Option("--json", help="write the result here too")] = None) -> None:
    """Champion vs challenger: paired bootstrap CIs on held-out data, off-policy estimates from the log."""
    _emit(_run_compare(champion, challenger, data, from_log, log_labels, method, n_boot, seed, gate_metric, alpha,
                       rounds, cost_weight), json_out)


def promote_cmd(challenger: Challenger, target: Annotated[Path, typer.Option(help="the artifact path the gateways watch")],
                data: Annotated[Path | None, typer.Option(help="labelled held-out rows (runs the comparison)")] = None,
                compare_json: Annotated[Path | None, typer.Option(help="a `compare --json` result for this pair instead of --data")] = None,
                n_boot: Boot = 2000, seed: Seed = 0, gate_metric: GateMetric = "aiq", alpha: Alpha = 0.05,
                rounds: Rounds = 12,
                json_out: Annotated[Path | None, typer.Option("--json", help="write the result here too")] = None) -> None:
    """Swap the challenger in (atomic rename) only if the improvement's lower bound is above zero."""
    from router.artifact import read_manifest
    from router.lab.compare import CompareResult
    from router.lab.promote import promote

    if (data is None) == (compare_json is None):
        _fail("give exactly one of --data (held-out rows) or --compare-json")
    if not target.exists():
        _fail(f"{target} does not exist: promotion replaces a serving artifact (copy the first one there yourself)")
    if compare_json is not None:
        try:
            result = CompareResult.model_validate_json(compare_json.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            _fail(f"{compare_json}: not a compare result: {exc}")
        versions = (read_manifest(target).version, read_manifest(challenger).version)
        if (result.champion["version"], result.challenger["version"]) != versions:
            _fail(f"{compare_json} compared {result.champion['version']} -> {result.challenger['version']}, "
                  f"not the serving {versions[0]} -> {versions[1]}")
    else:
        assert data is not None
        result = _run_compare(target, challenger, data, None, None, "dr", n_boot, seed, gate_metric, alpha, rounds, None)
    outcome = promote(challenger, target, gate_passed=result.gate.passed, gate_reason=result.gate.reason)
    _emit(outcome, json_out)
    if not outcome.promoted:
        typer.secho(outcome.reason, fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(REFUSED)


def _label_command(backend: object | None) -> Callable[..., None]:
    # `object`: any backend may be passed to make_app; these commands check for LabelBackend.
    def label_cmd(
        config: Annotated[Path, typer.Option(help="gateway config: the models, the tenant, its ledger")],
        from_log: Annotated[Path, typer.Option(help="`ttc requests export` file (JSON lines or Parquet)")],
        judge: Annotated[str, typer.Option(help="the judge model (a chat model of the config)")],
        tenant: Annotated[str, typer.Option(help="tenant charged for the calls")],
        budget_usd: Annotated[float, typer.Option(min=0.0, help="hard cap on this run's spend, held through the ledger")],
        out: Annotated[Path, typer.Option(help="outcome JSONL to write")],
        sample: Annotated[int, typer.Option(min=1, help="logged requests to label")] = 200,
        models: Annotated[str | None, typer.Option(help="comma-separated candidates (default: every chat model but the judge)")] = None,
        feedback: Annotated[Path | None, typer.Option(help="JSON lines {request_id, score}: ground truth for the judge's calibration")] = None,
        gold: Annotated[Path | None, typer.Option(help="outcome rows with trusted scores (calibration, and kept as source gold)")] = None,
        rubric: Annotated[Path | None, typer.Option(help="a text file replacing the judge's default instructions")] = None,
        grading: Annotated[str, typer.Option(help="absolute (1-10 per answer) or pairwise (each answer vs --reference's)")] = "absolute",
        reference: Annotated[str | None, typer.Option(help="pairwise: the strongest candidate, the yardstick")] = None,
        max_tokens: Annotated[int, typer.Option(min=1)] = 512,
        concurrency: Annotated[int, typer.Option(min=1)] = 4,
        seed: Seed = 0,
        report: Annotated[Path | None, typer.Option(help="report JSON (default: beside --out)")] = None,
    ) -> None:
        """Counterfactual answers and judge grades for logged requests, charged and capped; judge calibrated."""
        from contracts.outcomes import OutcomeFileError, OutcomeRow, read_outcomes, write_outcomes
        from router.lab.flywheel import read_feedback
        from router.lab.label import Grading, LabelBackend, LabelReport, label, sample_requests
        from router.lab.logdata import LogFileError, read_log

        if not isinstance(backend, LabelBackend):
            _fail("label calls models through the gateway's upstream layer: run `ttc router label`", code=2)
        try:
            chosen = sample_requests(read_log(from_log), sample, seed)
            # Feedback users left through the API, then any given in a file (which wins).
            truth = backend.stored_feedback(config, [(r.tenant, r.request_id) for r in chosen])
            truth |= read_feedback(feedback) if feedback else {}
            gold_rows = read_outcomes(gold) if gold else []
            instructions = rubric.read_text(encoding="utf-8") if rubric else None
            opened = backend.open_charged(config, tenant, budget_usd)
        except (OSError, ValueError, OutcomeFileError, LogFileError) as exc:
            _fail(str(exc), code=2)
        names = [m.strip() for m in models.split(",") if m.strip()] if models else [m for m in opened.chat_models if m != judge]
        unknown = [n for n in [*names, judge] if n not in opened.chat_models]
        if unknown or not names:
            _fail(f"unknown models {unknown}; the chat models tenant {tenant!r} may use are {list(opened.chat_models)}", code=2)
        if grading not in get_args(Grading):
            _fail(f"--grading must be one of {list(get_args(Grading))}, not {grading!r}", code=2)
        if grading == "pairwise" and reference not in names:
            _fail(f"--grading pairwise needs --reference, one of the candidates {names} (the strongest)", code=2)

        async def run() -> tuple[list[OutcomeRow], LabelReport]:
            try:
                return await label(chosen, opened, judge=judge, candidates=names, budget_usd=budget_usd,
                                   feedback=truth, gold=gold_rows, rubric=instructions, max_tokens=max_tokens,
                                   grading=cast(Grading, grading), reference=reference,
                                   concurrency=concurrency)
            finally:
                await opened.aclose()

        rows, result = asyncio.run(run())
        write_outcomes(out, rows)
        _emit(result, report or out.with_suffix(".report.json"))

    return label_cmd


def _flywheel_command(backend: object | None) -> Callable[..., None]:
    def flywheel_cmd(config: Annotated[Path, typer.Option(help="flywheel YAML (router.lab.flywheel.FlywheelConfig)")]) -> None:
        """One round of label -> train -> compare -> promote; the report goes beside the artifact."""
        from pydantic import ValidationError

        from router.lab.evaluate import LeakageError
        from router.lab.flywheel import load_config, run_round
        from router.lab.label import LabelBackend

        if not isinstance(backend, LabelBackend):
            _fail("flywheel calls models through the gateway's upstream layer: run `ttc router flywheel`", code=2)
        try:
            cfg = load_config(config)
            opened = backend.open_charged(cfg.gateway_config, cfg.tenant, cfg.budget_usd)
        except (OSError, ValueError, ValidationError) as exc:
            _fail(str(exc), code=2)

        def stored(requests: list[tuple[str, str]]) -> dict[str, float]:
            return backend.stored_feedback(cfg.gateway_config, requests)

        async def run() -> BaseModel:
            try:
                return await run_round(cfg, opened, stored)
            finally:
                await opened.aclose()

        try:
            report = asyncio.run(run())
        except LeakageError as exc:
            _fail(f"leakage: {exc}", code=2)
        except (OSError, ValueError) as exc:
            _fail(str(exc))
        typer.echo(report.model_dump_json(indent=2))

    return flywheel_cmd


def register(app: typer.Typer, backend: object | None) -> None:
    """Add the commands to the `router` group."""
    app.command("compare")(compare_cmd)
    app.command("promote")(promote_cmd)
    app.command("label")(_label_command(backend))
    app.command("flywheel")(_flywheel_command(backend))
