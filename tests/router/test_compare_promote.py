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
from router.lab.compare import exact_aiq
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
