"""Training rows from several sources, weighted by how much each is trusted, and warm starts.

A row's `source` (gold, feedback, judge; none counts as gold) sets its weight. The quality
estimators train on soft labels, so a weight is applied to the label itself: a cell's target is
the weighted mean of its labels, with the weight its labels lack (1 - their total, if positive)
going to the model's average score. A gold row (weight 1) keeps its score; a judge row at 0.4
moves the target from the model's average 40% of the way to the judge's verdict. A cell with a
gold and a judge label sits between them, nearer the gold one.

Judge rows count less than gold rows until the judge is measured: with a calibration (`ttc
router label`'s report), the judge's weight becomes (2a - 1)^2 for its measured agreement a with
ground truth, the share of a label's signal that survives symmetric flips at rate 1 - a (a
coin-flip judge gets weight 0, a perfect one weight 1).

`--init ARTIFACT` warm-starts from a champion: its featurizer settings and its training rows
(kept in the artifact as `training_rows.jsonl` when it was trained with `--keep-rows` or
`--init`) are combined with the new rows. The estimators are refit on the union; what carries
over is the data and the configuration, not the fitted weights.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from contracts.outcomes import OutcomeRow, read_outcomes, write_outcomes
from router.artifact import read_manifest
from router.lab.outcomes import prompt_key

TRAINING_ROWS = "training_rows.jsonl"
MIN_CALIBRATION_ROWS = 30  # fewer ground-truth comparisons than this do not move the judge's weight


class SourceWeights(BaseModel):
    gold: float = Field(default=1.0, ge=0.0, le=1.0)
    feedback: float = Field(default=0.7, ge=0.0, le=1.0)
    judge: float = Field(default=0.4, ge=0.0, le=1.0)

    def of(self, row: OutcomeRow) -> float:
        return float(getattr(self, row.source or "gold"))


class JudgeCalibration(BaseModel):
    """What `ttc router label` measured about its judge (the `calibration` object of its report):
    `agreement` is its balanced accuracy where the ground truth had both kinds, else its agreement."""

    agreement: float | None = Field(default=None, ge=0.0, le=1.0)
    n: int = 0

    @classmethod
    def of_report(cls, data: dict[str, object]) -> JudgeCalibration:
        measured = data.get("balanced_accuracy")
        if measured is None:
            measured = data.get("agreement")
        n = data.get("n", 0)
        return cls(agreement=float(measured) if isinstance(measured, (int, float)) else None,
                   n=int(n) if isinstance(n, (int, float)) else 0)


def parse_weights(items: Sequence[str], base: SourceWeights | None = None) -> SourceWeights:
    """`source=weight` strings (e.g. judge=0.6) over the defaults; ValueError names a bad one."""
    values = (base or SourceWeights()).model_dump()
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in values:
            raise ValueError(f"--source-weight takes gold=W, feedback=W or judge=W, not {item!r}")
        try:
            values[name] = float(value)
        except ValueError as exc:
            raise ValueError(f"--source-weight {item!r}: {value!r} is not a number") from exc
    return SourceWeights.model_validate(values)


def calibrated_weights(weights: SourceWeights, calibration: JudgeCalibration | None, *, explicit_judge: bool) -> SourceWeights:
    """The judge's weight from its measured agreement, unless the user set it explicitly."""
    if explicit_judge or calibration is None or calibration.agreement is None or calibration.n < MIN_CALIBRATION_ROWS:
        return weights
    signal = max(0.0, 2.0 * calibration.agreement - 1.0) ** 2
    return weights.model_copy(update={"judge": min(signal, weights.gold)})


def read_calibration(path: Path) -> JudgeCalibration:
    """The `calibration` object of a label report (or a bare {agreement, n} object)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    section = data.get("calibration", data)
    if not isinstance(section, dict):
        raise ValueError(f"{path}: no calibration object")
    return JudgeCalibration.of_report(section)


def weighted_rows(rows: Sequence[OutcomeRow], weights: SourceWeights) -> list[OutcomeRow]:
    """One row per (prompt, model) whose score is the weighted soft label described above. Token
    counts and cost come from the most trusted label of the cell."""
    cells: dict[tuple[str, str], list[OutcomeRow]] = defaultdict(list)
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for row in rows:
        cells[(prompt_key(row.prompt), row.model)].append(row)
        w = weights.of(row)
        totals[row.model][0] += w * row.score
        totals[row.model][1] += w
    prior = {m: (s / w if w > 0 else 0.5) for m, (s, w) in totals.items()}
    out = []
    for (_, model), labels in cells.items():
        ws = [weights.of(r) for r in labels]
        missing = max(0.0, 1.0 - sum(ws))
        score = (sum(w * r.score for w, r in zip(ws, labels, strict=True)) + missing * prior[model]) / (sum(ws) + missing)
        lead = max(zip(ws, labels, strict=True), key=lambda pair: pair[0])[1]
        out.append(lead.model_copy(update={"score": min(1.0, max(0.0, score))}))
    return out


class WarmStart(BaseModel):
    """What a champion artifact passes on to its challenger."""

    rows: list[OutcomeRow]
    featurizer: str
    embedding_model: str | None


def warm_start(artifact: Path) -> WarmStart:
    """The champion's training rows and featurizer; ValueError when the artifact kept no rows."""
    manifest = read_manifest(artifact)
    path = Path(artifact) / TRAINING_ROWS
    if not path.exists():
        raise ValueError(f"{artifact} kept no training rows ({TRAINING_ROWS}): train the champion with --keep-rows "
                         "(or --init) so that a challenger can build on its data")
    embedder = manifest.featurizer.get("embedder", {})
    model = embedder.get("model") if isinstance(embedder, dict) else None
    return WarmStart(rows=read_outcomes(path), featurizer=str(manifest.featurizer.get("name")),
                     embedding_model=str(model) if model else None)


def keep_rows(artifact: Path, rows: Sequence[OutcomeRow]) -> None:
    """Store the unweighted training rows (answer texts dropped) for the next warm start."""
    write_outcomes(Path(artifact) / TRAINING_ROWS, (r.model_copy(update={"response": None}) for r in rows))


def source_weighted_training(rows: Sequence[OutcomeRow], init: Path | None, weight_items: Sequence[str],
                             calibration: Path | None) -> tuple[list[OutcomeRow], list[OutcomeRow], dict[str, str]]:
    """`train`'s --init/--source-weight/--calibration: (all rows unweighted, to keep; the weighted
    rows to fit; featurizer settings inherited from the champion)."""
    explicit_judge = any(item.startswith("judge=") for item in weight_items)
    weights = calibrated_weights(parse_weights(weight_items), read_calibration(calibration) if calibration else None,
                                 explicit_judge=explicit_judge)
    combined, inherited = list(rows), {}
    if init is not None:
        start = warm_start(init)
        combined = start.rows + combined
        inherited["featurizer"] = start.featurizer
        if start.embedding_model:
            inherited["embedding_model"] = start.embedding_model
    return combined, weighted_rows(combined, weights), inherited
