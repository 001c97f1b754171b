"""`ttc router compare` and `promote`: paired bootstrap, the gate's refusal and its promotion."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from contracts.outcomes import write_outcomes
from router.artifact import read_manifest
from router.lab import metrics
from router.lab.cli import make_app
from router.lab.routing_scores import exact_aiq
from tests.router.flywheel_support import train_small, two_kind_rows

app = make_app()
runner = CliRunner()


@pytest.fixture(scope="module")
def routers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("flywheel")
    train_small(two_kind_rows(60, seed=1, inverted=True), work / "bad")
    train_small(two_kind_rows(60, seed=1), work / "good")
    write_outcomes(work / "heldout.jsonl", two_kind_rows(60, seed=2))
    return work


def test_exact_aiq_matches_the_grid_integral() -> None:
    costs, quals = [0.1, 0.4, 0.5, 1.0, 1.3], [0.2, 0.5, 0.45, 0.9, 0.95]
    for lo, hi in ((0.1, 1.0), (0.0, 1.3), (0.3, 0.9)):
        assert exact_aiq(costs, quals, lo, hi) == pytest.approx(metrics.aiq(costs, quals, lo, hi), abs=1e-5)


def test_compare_finds_the_better_router_with_stable_keys(routers: Path) -> None:
    out = routers / "compare.json"
    res = runner.invoke(app, ["compare", "--champion", str(routers / "bad"), "--challenger", str(routers / "good"),
                              "--data", str(routers / "heldout.jsonl"), "--n-boot", "500", "--json", str(out)])
    assert res.exit_code == 0, res.output
    result = json.loads(out.read_text())
    assert set(result) == {"schema_version", "champion", "challenger", "heldout", "gate", "offpolicy", "offpolicy_note"}
    held = result["heldout"]
    assert set(held) >= {"aiq", "apgr", "quality_at_matched_cost", "matched_cost_usd", "n_prompts", "n_boot"}
    for key in ("aiq", "apgr", "quality_at_matched_cost"):
        assert set(held[key]) == {"champion", "challenger", "difference"}
        assert set(held[key]["difference"]) == {"estimate", "low", "high", "level"}
    assert held["aiq"]["difference"]["low"] > 0 and held["apgr"]["difference"]["low"] > 0
    assert held["aiq"]["challenger"] > held["aiq"]["champion"]
    gate = result["gate"]
    assert gate["passed"] and gate["lower_bound"] > 0
    assert gate["alpha"] == pytest.approx(0.05 / 12)


def test_promote_refuses_an_equal_challenger_and_leaves_the_target(routers: Path, tmp_path: Path) -> None:
    target = tmp_path / "serving"
    shutil.copytree(routers / "good", target)
    same = tmp_path / "same"
    shutil.copytree(routers / "good", same)
    manifest = json.loads((same / "manifest.json").read_text())
    manifest["version"] += "-copy"
    (same / "manifest.json").write_text(json.dumps(manifest))
    res = runner.invoke(app, ["promote", "--challenger", str(same), "--target", str(target),
                              "--data", str(routers / "heldout.jsonl"), "--n-boot", "300"])
    assert res.exit_code == 3, res.output
    assert "refused" in res.output and "not above zero" in res.output
    assert not target.is_symlink() and read_manifest(target).version == read_manifest(routers / "good").version


def test_promote_swaps_in_a_better_challenger_by_rename(routers: Path, tmp_path: Path) -> None:
    target = tmp_path / "serving"
    shutil.copytree(routers / "bad", target)
    res = runner.invoke(app, ["promote", "--challenger", str(routers / "good"), "--target", str(target),
                              "--data", str(routers / "heldout.jsonl"), "--n-boot", "300"])
    assert res.exit_code == 0, res.output
    assert target.is_symlink()
    assert read_manifest(target).version == read_manifest(routers / "good").version
    versions = tmp_path / ".serving.versions"
    assert {p.name for p in versions.iterdir()} == {read_manifest(routers / "good").version,
                                                    read_manifest(routers / "bad").version}
    assert not [p for p in tmp_path.iterdir() if ".link-" in p.name]  # no stray temporary link
    assert os.readlink(target).startswith(".serving.versions/")


def test_compare_refuses_held_out_prompts_the_challenger_trained_on(routers: Path, tmp_path: Path) -> None:
    leaked = tmp_path / "leaked.jsonl"
    write_outcomes(leaked, two_kind_rows(60, seed=1))
    res = runner.invoke(app, ["compare", "--champion", str(routers / "bad"), "--challenger", str(routers / "good"),
                              "--data", str(leaked), "--n-boot", "100"])
    assert res.exit_code == 2 and "leakage" in res.output


def test_a_cross_fitted_gate_scores_every_prompt_with_the_fold_that_never_saw_it(routers: Path, tmp_path: Path) -> None:
    from contracts.outcomes import read_outcomes
    from router.api import load_router
    from router.lab.compare import compare_crossfit
    from router.lab.evaluate import LeakageError
    from router.lab.flywheel import crossfit_folds

    rows = read_outcomes(routers / "heldout.jsonl")
    folds = crossfit_folds(rows, 3, seed=0)
    assert sorted(p for fold in folds for p in fold) == sorted({r.prompt for r in rows})  # each prompt once
    assert folds == crossfit_folds(list(reversed(rows)), 3, seed=0)  # by prompt, not by row order
    fold_routers = []
    for k, left_out in enumerate(folds):
        fold_rows = [r for r in rows if r.prompt not in set(left_out)]
        fold_routers.append((load_router(train_small(fold_rows, tmp_path / f"fold-{k}")), left_out))
    champion, challenger = load_router(routers / "bad"), load_router(routers / "good")
    held, gate = compare_crossfit(champion, challenger, fold_routers, rows, n_boot=300, rounds=6)
    assert held.method == "crossfit" and held.folds == 3 and held.n_prompts == len(rows) // 2
    assert gate.passed and held.aiq.difference.low > 0 and "cross-fitted over 3 folds" in gate.reason

    # Fold routers that saw the prompts they score: a leak, not a comparison.
    saw_all = load_router(train_small(rows, tmp_path / "saw-all"))
    with pytest.raises(LeakageError):
        compare_crossfit(champion, challenger, [(saw_all, fold) for fold in folds], rows)
    with pytest.raises(LeakageError):  # so is a champion trained on them
        compare_crossfit(load_router(routers / "good"), challenger, fold_routers,
                         read_outcomes(routers / "good" / "training_rows.jsonl"))
    with pytest.raises(ValueError, match="in no fold"):
        compare_crossfit(champion, challenger, fold_routers[:2], rows)


def test_the_gate_averages_a_prompts_repeated_judgments(routers: Path) -> None:
    from contracts.outcomes import read_outcomes
    from router.api import load_router
    from router.lab.compare import compare_heldout
    from router.lab.routing_scores import mean_labels

    truth = read_outcomes(routers / "heldout.jsonl")
    # Each request judged four times: three right, the last one wrong (cheap's label inverted).
    wrong_last = [r.model_copy(update={"score": 1.0 - r.score}) if r.model == "cheap" else r for r in truth]
    repeated = [r for _ in range(3) for r in truth] + wrong_last
    merged = {(r.prompt, r.model): r.score for r in mean_labels(repeated)}
    assert len(merged) == len(truth)
    assert all(merged[(r.prompt, r.model)] == pytest.approx(0.75 * r.score + 0.25 * (1 - r.score)) for r in truth
               if r.model == "cheap")
    held, gate = compare_heldout(load_router(routers / "bad"), load_router(routers / "good"), repeated, n_boot=300)
    assert held.n_prompts == len(truth) // 2 and gate.passed
