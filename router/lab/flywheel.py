"""One flywheel round: label -> train -> compare -> promote, as `ttc router flywheel` runs it.

A round labels a sample of logged requests not labelled before, trains a challenger
warm-started from the champion (the artifact the gateways watch) on the champion's rows plus
the new ones, weighted by source, compares the two, and promotes only through the gate. The
gate's held-out scores come from a labelled held-out file when the config names one; else
from a share of each round's requests held out of training (`gate_data: holdout`), or from
cross-fitting over every label (`gate_data: crossfit`: the challenger's recipe is also trained
once per fold without that fold's prompts, router.lab.compare.compare_crossfit). The round's
report is written beside the artifact, in `<artifact>.flywheel/`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.outcomes import OutcomeRow, read_outcomes, write_outcomes
from router.artifact import read_manifest
from router.lab.compare import CompareResult, compare
from router.lab.label import Calibration, ChargedModels, Grading, LabelReport, label, sample_requests
from router.lab.logdata import read_log
from router.lab.outcomes import prompt_key
from router.lab.promote import PromoteResult, promote
from router.lab.sources import (
    JudgeCalibration,
    SourceWeights,
    calibrated_weights,
    keep_rows,
    warm_start,
    weighted_rows,
)
from router.lab.train import TrainConfig, train_router


class FlywheelConfig(BaseModel):
    """The YAML file `ttc router flywheel --config` reads."""

    model_config = ConfigDict(extra="forbid")

    gateway_config: Path  # the gateway's config: models, the labelling tenant, its ledger
    tenant: str  # charged for counterfactual answers and judge calls
    log: Path  # a `ttc requests export` file (JSON lines or Parquet)
    artifact: Path  # the path the gateways watch (becomes a link to a versioned copy)
    judge: str
    candidates: list[str]  # the models the router chooses among (its artifact's models)
    sample: int = Field(default=500, ge=1)
    budget_usd: float = Field(gt=0)
    grading: Grading = "absolute"  # or "pairwise": each answer against the reference's
    reference: str | None = None  # pairwise: the strongest candidate
    rubric: str | None = None  # the judge's instructions (default: router.lab.label's for the grading)
    max_tokens: int = Field(default=512, ge=1)
    heldout: Path | None = None  # labelled held-out rows for the gate; else gate_data says where its scores come from
    gate_data: Literal["holdout", "crossfit"] = "holdout"
    holdout_fraction: float = Field(default=0.3, gt=0.0, lt=1.0)  # gate_data: holdout
    gate_folds: int = Field(default=5, ge=2)  # gate_data: crossfit
    feedback: Path | None = None  # JSON lines {request_id, score}
    gold: Path | None = None  # outcome rows with trusted scores
    source_weights: SourceWeights = SourceWeights()
    explicit_judge_weight: bool = False  # true: keep source_weights.judge even when calibrated
    gate_metric: Literal["aiq", "apgr", "quality_at_matched_cost"] = "aiq"
    alpha: float = Field(default=0.05, gt=0.0, lt=1.0)
    rounds: int = Field(default=12, ge=1)  # comparisons planned: the gate's alpha is split over them
    n_boot: int = Field(default=2000, ge=100)
    cv_folds: int = Field(default=3, ge=2)
    seed: int = 0

    @model_validator(mode="after")
    def _reference_is_a_candidate(self) -> FlywheelConfig:
        if self.grading == "pairwise" and self.reference not in self.candidates:
            raise ValueError(f"grading: pairwise needs reference: one of the candidates {self.candidates} (the strongest)")
        return self


class FlywheelReport(BaseModel):
    started_at: str
    finished_at: str
    champion_version: str
    challenger: str | None
    label: LabelReport
    judge_weight: float
    train_rows: int
    heldout_rows: int
    compare: CompareResult | None
    promote: PromoteResult | None
    note: str | None = None


def load_config(path: Path) -> FlywheelConfig:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    base = Path(path).parent
    config = FlywheelConfig.model_validate(data)
    updates = {k: (base / v if isinstance(v, Path) and not v.is_absolute() else v)
               for k, v in config.model_dump().items() if isinstance(v, Path)}
    return config.model_copy(update=updates)


def read_feedback(path: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    for line_no, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                record = json.loads(line)
                out[str(record["request_id"])] = float(record["score"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{line_no}: need {{request_id, score}}: {exc}") from exc
    return out


def _complete_requests(rows: list[OutcomeRow], candidates: list[str],
                       trained: set[str]) -> tuple[dict[str, list[OutcomeRow]], list[str]]:
    """Rows by request, and the requests judged for every candidate whose prompt the champion was
    not trained on (prompt keys in `trained`): the ones a gate can score."""
    by_id: dict[str, list[OutcomeRow]] = {}
    for row in rows:
        by_id.setdefault(row.id or row.prompt, []).append(row)
    complete = sorted(k for k, rs in by_id.items() if {r.model for r in rs if r.source == "judge"} >= set(candidates)
                      and prompt_key(rs[0].prompt) not in trained)
    return by_id, complete


def _gate_rows(rows: list[OutcomeRow], candidates: list[str]) -> list[OutcomeRow]:
    return [r for r in rows if r.source == "judge" and r.model in candidates]


def split_heldout(rows: list[OutcomeRow], candidates: list[str], fraction: float, seed: int,
                  trained: set[str] = frozenset()) -> tuple[list[OutcomeRow], list[OutcomeRow]]:
    """(train, held-out) by request; held out are only complete requests (_complete_requests)."""
    by_id, complete = _complete_requests(rows, candidates, trained)
    held = set(random.Random(seed).sample(complete, int(len(complete) * fraction)))
    train = [r for k, rs in by_id.items() if k not in held for r in rs]
    heldout = _gate_rows([r for k in sorted(held) for r in by_id[k]], candidates)
    return train, heldout


def crossfit_rows(rows: list[OutcomeRow], candidates: list[str], trained: set[str] = frozenset()) -> list[OutcomeRow]:
    """The judged rows a cross-fitted gate scores: every complete request's (_complete_requests)."""
    by_id, complete = _complete_requests(rows, candidates, trained)
    return _gate_rows([r for k in complete for r in by_id[k]], candidates)


def crossfit_folds(rows: list[OutcomeRow], folds: int, seed: int) -> list[list[str]]:
    """The distinct prompts of `rows` dealt into `folds` groups (seeded; a prompt's requests stay together)."""
    by_key = {prompt_key(r.prompt): r.prompt for r in rows}
    keys = sorted(by_key)
    random.Random(seed).shuffle(keys)
    return [[by_key[k] for k in keys[i::folds]] for i in range(folds)]


StoredFeedback = Callable[[list[tuple[str, str]]], dict[str, float]]


async def run_round(config: FlywheelConfig, models: ChargedModels, stored_feedback: StoredFeedback | None = None) -> FlywheelReport:
    """`stored_feedback`: the request log's feedback for (tenant, request id) pairs, if the caller can read it."""
    started = datetime.now(UTC)
    stamp = f"{started:%Y%m%d%H%M%S}"
    reports = config.artifact.parent / f"{config.artifact.name}.flywheel"
    work = reports / f"round-{stamp}"
    work.mkdir(parents=True, exist_ok=True)
    champion = warm_start(config.artifact)
    champion_manifest = read_manifest(config.artifact)
    champion_version = champion_manifest.version
    # Labels outlive refused rounds: every round's training and held-out labels are kept here, so a
    # later challenger learns from all of them and the gate's held-out set grows round by round.
    train_pool, held_pool = reports / "train_labels.jsonl", reports / "heldout_labels.jsonl"
    past_train = read_outcomes(train_pool) if train_pool.exists() else []
    past_held = read_outcomes(held_pool) if held_pool.exists() else []
    seen = {r.id for r in [*champion.rows, *past_train, *past_held] if r.id}
    chosen = sample_requests(read_log(config.log), config.sample, config.seed + int(stamp), exclude_ids=seen)
    feedback = stored_feedback([(r.tenant, r.request_id) for r in chosen]) if stored_feedback else {}
    feedback |= read_feedback(config.feedback) if config.feedback else {}
    calibration_file = reports / "calibration.json"
    previous = Calibration.model_validate_json(calibration_file.read_text()) if calibration_file.exists() else None
    rows, label_report = await label(
        chosen, models, judge=config.judge, candidates=config.candidates, budget_usd=config.budget_usd,
        feedback=feedback, gold=read_outcomes(config.gold) if config.gold else (), rubric=config.rubric,
        grading=config.grading, reference=config.reference, max_tokens=config.max_tokens, previous=previous)
    if label_report.calibration.n > 0 and not label_report.calibration.inherited:
        calibration_file.write_text(label_report.calibration.model_dump_json(indent=2) + "\n", encoding="utf-8")
    write_outcomes(work / "labels.jsonl", rows)
    calibration = JudgeCalibration.of_report(label_report.calibration.model_dump())
    weights = calibrated_weights(config.source_weights, calibration, explicit_judge=config.explicit_judge_weight)
    crossfit = config.heldout is None and config.gate_data == "crossfit"
    if config.heldout or crossfit:
        new_train, new_held = rows, []
        heldout = read_outcomes(config.heldout) if config.heldout else []
    else:
        trained = {prompt_key(r.prompt) for r in [*champion.rows, *past_train]}
        new_train, new_held = split_heldout(rows, config.candidates, config.holdout_fraction, config.seed, trained)
        heldout = past_held + new_held
    write_outcomes(train_pool, past_train + new_train)
    write_outcomes(held_pool, past_held + new_held)

    def finish(challenger: str | None, result: CompareResult | None, promoted: PromoteResult | None, note: str | None,
               train_rows: int) -> FlywheelReport:
        report = FlywheelReport(started_at=started.isoformat(), finished_at=datetime.now(UTC).isoformat(),
                                champion_version=champion_version, challenger=challenger, label=label_report,
                                judge_weight=weights.judge, train_rows=train_rows, heldout_rows=len(heldout),
                                compare=result, promote=promoted, note=note)
        (reports / f"round-{stamp}.json").write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return report

    if not new_train:
        return finish(None, None, None, "no new labels this round (nothing left to label, or no budget)", 0)
    held_keys = {prompt_key(r.prompt) for r in heldout}
    combined = [r for r in _unique([*champion.rows, *past_held, *past_train, *new_train]) if prompt_key(r.prompt) not in held_keys]
    challenger = work / "challenger"
    train_config = TrainConfig(featurizer=champion.featurizer, cv_folds=config.cv_folds, seed=config.seed,
                               **({"embedding_model": champion.embedding_model} if champion.embedding_model else {}))
    prices = champion_manifest.prices
    train_router(weighted_rows(combined, weights), challenger, prices, train_config,
                 exclude_prompts=[r.prompt for r in heldout])
    keep_rows(challenger, combined)
    folds: list[tuple[Path, list[str]]] = []
    try:
        if crossfit:
            heldout = crossfit_rows([*past_held, *past_train, *new_train], config.candidates,
                                    set(champion_manifest.train_prompt_sha256))
            for k, left_out in enumerate(crossfit_folds(heldout, config.gate_folds, config.seed)):
                keys = {prompt_key(p) for p in left_out}
                fold_rows = [r for r in combined if prompt_key(r.prompt) not in keys]
                train_router(weighted_rows(fold_rows, weights), work / f"fold-{k}", prices, train_config,
                             exclude_prompts=left_out)
                folds.append((work / f"fold-{k}", left_out))
        result = compare(config.artifact, challenger, heldout, log=read_log(config.log), log_labels=rows,
                         n_boot=config.n_boot, seed=config.seed, gate_metric=config.gate_metric,
                         alpha_family=config.alpha, rounds=config.rounds, folds=folds)
    except ValueError as exc:  # LeakageError is not one: a leak is a bug to surface, not a refusal
        return finish(str(challenger), None, None, f"not compared: {exc}", len(combined))
    promoted = promote(challenger, config.artifact, gate_passed=result.gate.passed, gate_reason=result.gate.reason)
    return finish(str(challenger), result, promoted, None, len(combined))


def _unique(rows: list[OutcomeRow]) -> list[OutcomeRow]:
    """Rows once each: a promoted challenger's kept rows already hold the labels pooled before it."""
    seen: set[tuple[str | None, str, str, str | None, float]] = set()
    out = []
    for row in rows:
        key = (row.id, prompt_key(row.prompt), row.model, row.source, row.score)
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out
