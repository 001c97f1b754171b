"""The CLI end to end on a small real subset: import -> train -> eval -> calibrate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from router.lab.cli import make_app
from tests.router.conftest import DATA

app = make_app()  # no gateway backend: every command but collect
runner = CliRunner()
pytestmark = pytest.mark.skipif(not DATA.exists(), reason="shared data not mounted")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("cli")
    res = runner.invoke(app, ["import", "--source", "routellm-gsm8k", "--out-dir", str(work / "data"),
                              "--data-dir", str(DATA), "--max-prompts", "200", "--seed", "1"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["train", "--data", str(work / "data/train.jsonl"), "--out", str(work / "art"),
                              "--cv-folds", "2", "--json", str(work / "train.json")])
    assert res.exit_code == 0, res.output
    return work


def test_train_json_keys(trained: Path) -> None:
    out = json.loads((trained / "train.json").read_text())
    assert set(out) == {"artifact", "version", "cv", "data_sha256"}


def test_eval_writes_report_plot_and_exact_json(trained: Path) -> None:
    res = runner.invoke(app, ["eval", "--artifact", str(trained / "art"), "--data", str(trained / "data/test.jsonl"),
                              "--report", str(trained / "r.md"), "--json", str(trained / "r.json")])
    assert res.exit_code == 0, res.output
    out = json.loads((trained / "r.json").read_text())
    keys = {"aiq", "apgr", "cpt50", "cpt80", "match_best_cost_fraction", "quality_at_cheapest"}
    assert set(out) == {"router", "baselines"}
    assert set(out["router"]) == keys
    assert set(out["baselines"]) == {"random", "knn", "oracle", "best_single"}
    assert set(out["baselines"]["best_single"]) == {"model", "quality", "cost"}
    for name in ("random", "knn", "oracle"):
        assert set(out["baselines"][name]) == keys
    assert out["baselines"]["random"]["apgr"] == pytest.approx(0.5)
    assert 0 < out["router"]["cpt50"] <= 1  # a fraction, not a percentage
    assert out["baselines"]["oracle"]["aiq"] >= out["router"]["aiq"]
    assert (trained / "r.png").stat().st_size > 1000
    assert "| router |" in (trained / "r.md").read_text()


def test_eval_exits_2_on_leakage(trained: Path, tmp_path: Path) -> None:
    leaked = tmp_path / "test.jsonl"
    shutil.copy(trained / "data/train.jsonl", leaked)
    shutil.copy(trained / "data/test.jsonl", tmp_path / "train.jsonl")
    res = runner.invoke(app, ["eval", "--artifact", str(trained / "art"), "--data", str(leaked),
                              "--report", str(tmp_path / "r.md")])
    assert res.exit_code == 2
    assert "leakage" in res.output


def test_calibrate_reports_actual_share(trained: Path) -> None:
    res = runner.invoke(app, ["calibrate", "--artifact", str(trained / "art"), "--prompts",
                              str(trained / "data/test.jsonl"), "--strong-share", "0.3"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["target"] == "share:gpt-4-1106-preview"
    assert abs(out["sample_value"] - 0.3) < 0.05
    assert out["shares"]["gpt-4-1106-preview"] == pytest.approx(out["sample_value"])


def test_bad_input_gets_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "model": "m", "score": 3}\n')
    res = runner.invoke(app, ["train", "--data", str(bad), "--out", str(tmp_path / "a")])
    assert res.exit_code == 1
    assert "bad.jsonl:1" in res.output
    res = runner.invoke(app, ["import", "--source", "nope", "--out-dir", str(tmp_path)])
    assert res.exit_code == 1 and "unknown source" in res.output
