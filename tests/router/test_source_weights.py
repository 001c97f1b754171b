"""Source weights: judge rows count less than gold ones, the calibration moves the judge's
weight, and `train --init` builds on the champion's rows with those weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from contracts.outcomes import OutcomeRow, read_outcomes, write_outcomes
from router.api import load_router
from router.lab.cli import make_app
from router.lab.sources import JudgeCalibration, SourceWeights, calibrated_weights, parse_weights, weighted_rows
from tests.router.flywheel_support import train_small, two_kind_rows

runner = CliRunner()


def test_a_judge_label_moves_the_target_from_the_prior_by_its_weight() -> None:
    rows = [OutcomeRow(prompt="p1", model="m", score=1.0, source="gold"),
            OutcomeRow(prompt="p2", model="m", score=0.0, source="gold"),
            OutcomeRow(prompt="p3", model="m", score=1.0, source="judge")]
    weights = SourceWeights(gold=1.0, judge=0.4)
    out = {r.prompt: r.score for r in weighted_rows(rows, weights)}
    prior = (1.0 + 0.0 + 0.4 * 1.0) / 2.4
    assert out["p1"] == 1.0 and out["p2"] == 0.0
    assert out["p3"] == pytest.approx(0.4 * 1.0 + 0.6 * prior)
    both = weighted_rows(rows + [OutcomeRow(prompt="p3", model="m", score=0.0, source="gold")], weights)
    assert {r.prompt: r.score for r in both}["p3"] == pytest.approx(0.4 / 1.4)  # nearer the gold label


def test_calibration_sets_the_judge_weight_unless_given() -> None:
    base = SourceWeights()
    assert calibrated_weights(base, JudgeCalibration(agreement=0.5, n=200), explicit_judge=False).judge == 0.0
    assert calibrated_weights(base, JudgeCalibration(agreement=0.95, n=200), explicit_judge=False).judge == pytest.approx(0.81)
    assert calibrated_weights(base, JudgeCalibration(agreement=0.95, n=5), explicit_judge=False).judge == base.judge
    assert calibrated_weights(base, JudgeCalibration(agreement=0.95, n=200), explicit_judge=True).judge == base.judge
    assert parse_weights(["judge=0.2", "feedback=0.5"]).model_dump() == {"gold": 1.0, "feedback": 0.5, "judge": 0.2}
    with pytest.raises(ValueError, match="source-weight"):
        parse_weights(["oracle=1"])


def test_source_weights_change_the_fit_of_a_warm_started_challenger(tmp_path: Path) -> None:
    champion = train_small(two_kind_rows(40, seed=5), tmp_path / "champion")
    # Judge rows that contradict the champion's gold rows on new prompts: cheap "solves" the hard ones.
    new = two_kind_rows(60, seed=6)
    hard_prompts = {r.prompt for r in new if r.model == "cheap" and r.score == 0.0}
    judged = [r.model_copy(update={"source": "judge", "judge": "fake-judge", "score": 1.0})
              for r in new if r.prompt in hard_prompts]
    write_outcomes(tmp_path / "judged.jsonl", judged)
    app = make_app()
    hard = "prove that the sequence 12 converges to 99 under the stated lemma"
    predicted = {}
    for weight in ("0.05", "1.0"):
        out = tmp_path / f"challenger-{weight}"
        res = runner.invoke(app, ["train", "--data", str(tmp_path / "judged.jsonl"), "--out", str(out), "--init", str(champion),
                                  "--source-weight", f"judge={weight}", "--cv-folds", "2", "--token-bag", "off",
                                  "--no-task-prior", "--probes", "0"])
        assert res.exit_code == 0, res.output
        router = load_router(out)
        assert router.manifest.featurizer["name"] == "static"  # inherited from the champion
        predicted[weight] = float(router.predict([hard]).quality[0, router.models.index("cheap")])
        kept = read_outcomes(out / "training_rows.jsonl")
        assert len(kept) == 80 + len(judged) and {r.source for r in kept} == {None, "judge"}  # champion's rows + new ones, unweighted
    # Trusting the judge fully makes cheap look far better on hard prompts than barely trusting it.
    assert predicted["1.0"] > predicted["0.05"] + 0.15, predicted


def test_init_without_kept_rows_says_how_to_fix_it(tmp_path: Path) -> None:
    artifact = train_small(two_kind_rows(30, seed=7), tmp_path / "plain")
    (artifact / "training_rows.jsonl").unlink()
    write_outcomes(tmp_path / "new.jsonl", two_kind_rows(20, seed=8))
    res = runner.invoke(make_app(), ["train", "--data", str(tmp_path / "new.jsonl"), "--out", str(tmp_path / "x"),
                                     "--init", str(artifact)])
    assert res.exit_code == 1 and "--keep-rows" in res.output
    assert json.loads((artifact / "manifest.json").read_text())["version"]
