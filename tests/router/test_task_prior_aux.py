"""Task-prior stacking and auxiliary difficulty regressors, including their leakage guard."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from contracts.outcomes import OutcomeRow, write_outcomes
from contracts.prices import Price
from router.features import PromptFeaturizer
from router.features.aux import aux_key, drop_excluded, fit_aux, gsm8k_solution_targets
from router.features.sentence import resolve_model_path
from router.features.static import StaticEmbedder
from router.features.task_prior import fit_task_prior, out_of_fold
from router.lab.cli import make_app
from router.lab.evaluate import LeakageError, evaluate
from router.lab.selection import select_and_fit
from router.lab.train import TrainConfig, train_router
from router.predictors.head import QualityHead
from router.predictors.quality import PerModelLogistic

app = make_app()  # no gateway backend: every command but collect


def _tasks_data(n: int = 300, seed: int = 0) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """Three tasks in separate feature clusters; which model succeeds depends on the task only."""
    rng = np.random.default_rng(seed)
    task_ids = rng.integers(0, 3, size=n)
    centers = np.eye(3, 6) * 3.0
    x = (centers[task_ids] + rng.normal(size=(n, 6))).astype(np.float32)
    rates = np.array([[0.9, 0.2], [0.2, 0.9], [0.5, 0.5]])
    y = (rng.random((n, 2)) < rates[task_ids]).astype(float)
    return x, [f"t{t}" for t in task_ids], y, np.ones_like(y, dtype=bool)


def test_task_prior_learns_tasks_and_rates() -> None:
    x, tasks, y, mask = _tasks_data()
    prior = fit_task_prior(x[:200], tasks[:200], y[:200], mask[:200])
    assert prior.tasks == ["t0", "t1", "t2"]
    pred = np.array(prior.tasks)[prior.task_proba(x[200:]).argmax(1)]
    assert (pred == np.array(tasks[200:])).mean() > 0.9
    np.testing.assert_allclose(prior.rates[0], [0.9, 0.2], atol=0.15)
    feats = prior.transform(x[200:])
    t0 = np.array(tasks[200:]) == "t0"
    assert (feats[t0, 0] > feats[t0, 1]).mean() > 0.9  # model 0 expected better on task t0
    # Out-of-fold features exist for every training prompt and never fit on their own fold.
    splits = [(np.arange(100, 200), np.arange(0, 100)), (np.arange(0, 100), np.arange(100, 200))]
    assert out_of_fold(x[:200], tasks[:200], y[:200], mask[:200], splits)[0].shape == (200, 2)


def test_task_prior_needs_two_tasks() -> None:
    x, _, y, mask = _tasks_data(n=50)
    with pytest.raises(ValueError, match="two tasks"):
        fit_task_prior(x, ["only"] * 50, y, mask)


def test_selection_stacks_task_prior_and_round_trips(tmp_path: Path) -> None:
    x, tasks, y, mask = _tasks_data()
    # Only the first feature column is given to the prompt model, so the task
    # signal (columns 0-2) is mostly hidden from it: the task prior must help.
    sel = select_and_fit(x[:240], y[:240], mask[:240], [PerModelLogistic(c=0.01)], folds=3, tasks=tasks[:240])
    info = sel.cv["task_prior"]
    assert info["used"] is True and info["n_tasks"] == 3
    assert sel.cv["knn_stack"]["stacked_brier"] < sel.cv["knn_stack"]["platt_brier"]
    without = select_and_fit(x[:240], y[:240], mask[:240], [PerModelLogistic(c=0.01)], folds=3)
    assert without.cv["task_prior"]["used"] is False
    sel.head.save(tmp_path / "q.npz")
    again = QualityHead.load(tmp_path / "q.npz")
    assert again.task_prior is not None and again.task_prior.tasks == ["t0", "t1", "t2"]
    np.testing.assert_allclose(again.predict_proba(x[240:]), sel.head.predict_proba(x[240:]), atol=1e-5)


def test_gsm8k_solution_targets_by_hand() -> None:
    answer = "She sells 16 - 3 = <<16-3=13>>13 eggs.\nShe makes 13 * 2 = <<13*2=26>>26 dollars.\n#### 26"
    calcs, lines, _chars, log_answer, fraction = gsm8k_solution_targets(answer)
    assert calcs == pytest.approx(np.log1p(2))
    assert lines == pytest.approx(np.log1p(2))
    assert log_answer == pytest.approx(np.log1p(26))
    assert fraction == 0.0
    assert gsm8k_solution_targets("x = 1.5\n#### 1.5")[4] == 1.0


def test_aux_key_ignores_case_punctuation_and_spacing() -> None:
    assert aux_key("Janet's ducks lay 16 eggs.") == aux_key("janet s  ducks lay 16 eggs")
    assert aux_key("lay 16 eggs") != aux_key("lay 17 eggs")
    keep = drop_excluded(["A b, c?", "other"], {aux_key("a B c")})
    assert keep.tolist() == [False, True]


def test_fit_aux_recovers_a_linear_target() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    target = np.column_stack([2 * x[:, 0] - x[:, 1], x[:, 2]])
    reg, info = fit_aux("toy", ["a", "b"], x, target)
    pred = reg.transform(x)
    assert np.corrcoef(pred[:, 0], target[:, 0])[0, 1] > 0.95
    assert info["n"] == 400


QUESTIONS = [f"Tom has {a} apples and buys {b} more bags of {c} apples. How many apples does he have?"
             for a, b, c in zip(range(3, 33), range(2, 32), range(4, 34), strict=True)]


def _aux_setup(tmp_path: Path) -> tuple[list[OutcomeRow], list[OutcomeRow], Path, PromptFeaturizer]:
    """Outcome rows on 30 prompts; a fake shared-data dir whose GSM8K train split repeats one test prompt."""
    rng = np.random.default_rng(0)
    rows = [OutcomeRow(prompt=q, model=m, score=float(rng.random() < p), prompt_tokens=30, completion_tokens=50)
            for q in QUESTIONS for m, p in (("weak", 0.5), ("strong", 0.9))]
    test_prompts = set(QUESTIONS[24:])
    train = [r for r in rows if r.prompt not in test_prompts]
    test = [r for r in rows if r.prompt in test_prompts]
    data = tmp_path / "shared"
    (data / "gsm8k").mkdir(parents=True)
    aux = [f"Ann reads {k} pages a day for {k + 2} days. How many pages?" for k in range(40)]
    aux.append(QUESTIONS[27].upper().replace("?", " ?"))  # a reformatted copy of a held-out prompt
    with (data / "gsm8k" / "train.jsonl").open("w") as handle:
        for k, q in enumerate(aux):
            handle.write(json.dumps({"question": q, "answer": f"{k} + 2 = <<{k}+2={k + 2}>>{k + 2}\n#### {k + 2}"}) + "\n")
    tok = (Path(resolve_model_path("all-MiniLM-L6-v2")) / "tokenizer.json").read_text()
    table = np.random.default_rng(0).normal(size=(30522, 8)).astype(np.float32)
    return train, test, data, PromptFeaturizer(StaticEmbedder(table, tok))


PRICES = {"weak": Price(input_per_1m=0.5, output_per_1m=0.5), "strong": Price(input_per_1m=10.0, output_per_1m=30.0)}


def test_aux_regressor_is_served_and_leakage_is_refused(tmp_path: Path) -> None:
    train, test, data, feat = _aux_setup(tmp_path)
    config = TrainConfig(featurizer="static", cv_folds=2, aux=["gsm8k-steps"], aux_data_dir=str(data))
    train_router(train, tmp_path / "leaky", PRICES, config, featurizer=feat)
    with pytest.raises(LeakageError):
        evaluate(tmp_path / "leaky", test, train, baseline_embedder="router")
    # The CLI reports the same overlap with exit code 2.
    write_outcomes(tmp_path / "d" / "test.jsonl", test)
    write_outcomes(tmp_path / "d" / "train.jsonl", train)
    res = CliRunner().invoke(app, ["eval", "--artifact", str(tmp_path / "leaky"), "--data", str(tmp_path / "d/test.jsonl"),
                                   "--report", str(tmp_path / "r.md")])
    assert res.exit_code == 2, res.output


def test_aux_excludes_held_out_prompts_and_round_trips(tmp_path: Path) -> None:
    from router.api import load_router

    train, test, data, _ = _aux_setup(tmp_path)
    _, _, _, feat = _aux_setup(tmp_path / "again")
    config = TrainConfig(featurizer="static", cv_folds=2, aux=["gsm8k-steps"], aux_data_dir=str(data))
    result = train_router(train, tmp_path / "art", PRICES, config, featurizer=feat,
                          exclude_prompts=[r.prompt for r in test])
    assert result.cv["aux"][0]["excluded"] == 1 and result.cv["aux"][0]["examples"] == 40
    router = load_router(tmp_path / "art")
    assert len(router.featurizer.aux) == 1
    x = router.featurizer.transform(QUESTIONS[:3])
    assert x.shape == (3, 8 + 18 + 5)  # embedding, text statistics, five auxiliary targets
    np.testing.assert_allclose(x, feat.transform(QUESTIONS[:3]), atol=2e-3)
    evaluate(tmp_path / "art", test, train, baseline_embedder="router")  # no leakage now


def test_projection_featurizer_maps_to_teacher_space_and_round_trips(tmp_path: Path) -> None:
    from router.features.projection import fit_projection
    from router.features.sentence import SentenceEmbedder

    tok = (Path(resolve_model_path("all-MiniLM-L6-v2")) / "tokenizer.json").read_text()
    table = np.random.default_rng(0).normal(size=(30522, 8)).astype(np.float32)
    feat = PromptFeaturizer(StaticEmbedder(table, tok), project_to="all-MiniLM-L6-v2").fit(QUESTIONS)
    assert feat.projection is not None and feat.embedding_dim == 384
    x = feat.transform(QUESTIONS[:4])
    assert x.shape == (4, 384 + 18)
    np.testing.assert_allclose(np.linalg.norm(x[:, :384], axis=1), 1.0, atol=1e-5)
    # The map moves the static embedding toward the teacher's (in-sample, heavily regularized).
    teacher = SentenceEmbedder().transform(QUESTIONS[:4])
    assert float((x[:, :384] * teacher).sum(1).mean()) > 0.5
    spec = feat.save(tmp_path)
    again = PromptFeaturizer.load(tmp_path, spec)
    np.testing.assert_allclose(again.transform(QUESTIONS[:4]), x, atol=3e-3)
    # A pure linear target is recovered by the ridge map.
    rng = np.random.default_rng(1)
    f = rng.normal(size=(300, 6))
    proj = fit_projection(f, f @ rng.normal(size=(6, 3)), "toy")
    assert proj.dim == 3 and proj.alpha >= 30.0


def test_selection_by_out_of_fold_routing_aiq() -> None:
    x, _, y, mask = _tasks_data()
    cost = np.tile([1.0, 5.0], (len(y), 1))
    cands = [PerModelLogistic(c=1e-4), PerModelLogistic(c=1.0)]
    sel = select_and_fit(x, y, mask, cands, folds=3, cost=cost)
    aiqs = [c["oof_aiq"] for c in sel.cv["candidates"]]
    assert sel.cv["selected"]["oof_aiq"] == max(aiqs)
    # Routing on the task signal beats a near-constant model (C=1e-4 shrinks every coefficient to ~0).
    assert aiqs[1] > aiqs[0]
    # Without costs the choice falls back to Brier and no AIQ is computed.
    assert "oof_aiq" not in select_and_fit(x, y, mask, cands, folds=3).cv["selected"]


def test_projection_corpus_excludes_held_out_prompts_and_is_checked_by_eval(tmp_path: Path) -> None:
    train, test, data, feat = _aux_setup(tmp_path)
    feat.project_to = "all-MiniLM-L6-v2"
    config = TrainConfig(featurizer="static-proj", cv_folds=2, projection_corpus=["gsm8k-train"], aux_data_dir=str(data))
    result = train_router(train, tmp_path / "leaky", PRICES, config, featurizer=feat)
    assert result.cv["aux"][0] == {"name": "projection:gsm8k-train", "examples": 41, "excluded": 0}
    with pytest.raises(LeakageError):
        evaluate(tmp_path / "leaky", test, train, baseline_embedder="router")
    _, _, _, feat2 = _aux_setup(tmp_path / "again")
    feat2.project_to = "all-MiniLM-L6-v2"
    result = train_router(train, tmp_path / "clean", PRICES, config, featurizer=feat2,
                          exclude_prompts=[r.prompt for r in test])
    assert result.cv["aux"][0]["excluded"] == 1
    evaluate(tmp_path / "clean", test, train, baseline_embedder="router")
