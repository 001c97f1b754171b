"""Probe sets, onboarding a new model with everything else frozen, and shrinkage toward priors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from contracts.outcomes import OutcomeRow, write_outcomes
from contracts.prices import Price
from router.api import load_router
from router.features import PromptFeaturizer
from router.features.sentence import resolve_model_path
from router.features.static import StaticEmbedder
from router.lab.cli import Models, make_app
from router.lab.collect import CompletionOutcome
from router.lab.evaluate import _Context
from router.lab.matrix import build_matrix
from router.lab.onboard import NewModelFit, onboard
from router.lab.task_offsets import offset_logit
from router.lab.probes import ProbeSelector, design_features, read_probes
from router.predictors.head import QualityHead
from router.lab.train import TrainConfig, expected_cost, train_router

WORDS = ["apple", "river", "garden", "window", "castle", "pencil", "forest", "bottle", "engine", "ticket",
         "violin", "carpet", "rocket", "basket", "mirror", "island", "candle", "helmet", "jacket", "ladder",
         "copper", "silver", "marble", "timber", "cotton", "velvet", "canvas", "pepper", "butter", "ginger"]
TEMPLATES = {"colour": "What colour is the {} usually?", "sum": "Add 3 and {} letters of the word {}."}
PRICES = {"small": Price(input_per_1m=0.1, output_per_1m=0.2), "medium": Price(input_per_1m=1.0, output_per_1m=2.0),
          "large": Price(input_per_1m=5.0, output_per_1m=15.0), "newcomer": Price(input_per_1m=0.5, output_per_1m=1.0)}


def _featurizer() -> PromptFeaturizer:
    tok = (Path(resolve_model_path("all-MiniLM-L6-v2")) / "tokenizer.json").read_text()
    table = np.random.default_rng(0).normal(size=(30522, 8)).astype(np.float32)
    return PromptFeaturizer(StaticEmbedder(table, tok))


def _prompts() -> list[tuple[str, str]]:
    out = []
    for i, word in enumerate(WORDS):
        for j in range(4):
            out.append(("colour", TEMPLATES["colour"].format(word) + " " * j))
            out.append(("sum", TEMPLATES["sum"].format(len(word) + j, word)))
        del i
    return out


def _rows(models: dict[str, tuple[float, float]], seed: int = 0) -> list[OutcomeRow]:
    """Each model succeeds with its own rate per task (colour, sum); same tokens everywhere, so a
    model's cost is the same on every prompt."""
    rng = np.random.default_rng(seed)
    rows = []
    for task, prompt in _prompts():
        for model, (p_colour, p_sum) in models.items():
            p = p_colour if task == "colour" else p_sum
            rows.append(OutcomeRow(prompt=prompt, model=model, score=float(rng.random() < p), task=task,
                                   prompt_tokens=20, completion_tokens=10))
    return rows


TASK_MODELS = {"small": (0.9, 0.1), "medium": (0.5, 0.6), "large": (0.8, 0.9)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onboard") / "art"
    train_router(_rows(TASK_MODELS), out, PRICES, TrainConfig(featurizer="static", cv_folds=3, probes=24, token_bag="off"),
                 featurizer=_featurizer())
    return out


def test_training_writes_a_probe_set_the_artifact_names(trained: Path) -> None:
    manifest = json.loads((trained / "manifest.json").read_text())
    probes = read_probes(trained)
    assert manifest["probes"]["n"] == len(probes) == 24
    assert len({p.prompt for p in probes}) == 24
    assert {p.task for p in probes} == {"colour", "sum"}  # the clusters' quotas cover both tasks


def test_probe_selection_is_deterministic_covers_the_strata_and_can_prefer_disagreement() -> None:
    rng = np.random.default_rng(1)
    # Three well separated groups of prompts of different sizes.
    design = np.vstack([rng.normal(loc, 0.3, size=(n, 4)) for loc, n in ((0.0, 200), (5.0, 60), (-5.0, 40))])
    y = (rng.random((300, 3)) < 0.5).astype(float)
    mask = np.ones_like(y, dtype=bool)
    first = ProbeSelector(k=30, seed=0).fit(design, y, mask).selected_
    again = ProbeSelector(k=30, seed=0).fit(design.copy(), y.copy(), mask).selected_
    assert np.array_equal(first, again) and len(set(first.tolist())) == 30
    group = np.repeat([0, 1, 2], [200, 60, 40])
    counts = np.bincount(group[first], minlength=3)
    assert counts.min() >= 2 and counts[0] > counts[1] > counts[2]  # every group, roughly in proportion
    # Two copies of every prompt's features: with spread_weight the one the models disagree on is chosen.
    twin = np.vstack([design, design])
    outcomes = np.vstack([np.ones((300, 3)), y])
    outcomes[300:, 0], outcomes[300:, 1] = 1.0, 0.0  # the second copy always splits the models
    picked = ProbeSelector(k=30, spread_weight=1.0).fit(twin, outcomes, np.ones_like(outcomes, dtype=bool)).selected_
    assert (picked >= 300).all()
    # Only eligible rows (prompts with a reference answer) are ever chosen.
    eligible = np.arange(300) % 3 == 0
    assert eligible[ProbeSelector(k=30).fit(design, y, mask, eligible).selected_].all()


def test_onboarding_fits_only_the_new_model(trained: Path, tmp_path: Path) -> None:
    # The newcomer is good at sums and bad at colours (the opposite of `small`).
    newcomer = _rows({"newcomer": (0.0, 1.0)}, seed=3)
    probe_keys = {p.prompt for p in read_probes(trained)}
    answered = [r for r in newcomer if r.prompt in probe_keys]
    assert len(answered) == 24
    out = tmp_path / "onboarded"
    info = onboard(trained, "newcomer", answered, PRICES["newcomer"], out)
    assert info["on_probes"] == 24 and info["n"] == 24

    before, after = load_router(trained), load_router(out)
    assert after.models == [*before.models, "newcomer"]
    assert after.manifest.prices["newcomer"] == PRICES["newcomer"]
    assert "newcomer" in after.manifest.onboarded and after.manifest.version != before.manifest.version
    prompts = [p for _, p in _prompts()]
    old, new = before.predict(prompts), after.predict(prompts)
    # Frozen: every known model's quality and length predictions are bit-for-bit the same.
    assert np.array_equal(old.quality, new.quality[:, :3])
    assert np.array_equal(old.completion_tokens, new.completion_tokens[:, :3])
    tasks = np.array([t for t, _ in _prompts()])
    q_new = new.quality[:, 3]
    assert q_new[tasks == "sum"].mean() > q_new[tasks == "colour"].mean() + 0.15
    small = before.models.index("small")
    assert (q_new[tasks == "sum"] > new.quality[tasks == "sum", small]).all()
    assert new.completion_tokens[:, 3] == pytest.approx(10.0, rel=0.05)
    with pytest.raises(ValueError, match="already in the artifact"):
        onboard(out, "newcomer", answered, PRICES["newcomer"], tmp_path / "again")


def _no_signal_rows(seed: int) -> list[OutcomeRow]:
    """Distinct prompts; each model succeeds at its own rate whatever the prompt says."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(200):
        a, b, c = rng.choice(WORDS, 3, replace=False)
        prompt = f"Describe the {a} and the {b} next to the {c}, case {i}."
        for model, rate in {"small": 0.55, "medium": 0.7, "large": 0.85}.items():
            rows.append(OutcomeRow(prompt=prompt, model=model, score=float(rng.random() < rate), prompt_tokens=20,
                                   completion_tokens=10))
    return rows


def test_no_signal_shrinks_to_the_priors_and_the_curve_is_the_mixing_line(tmp_path: Path) -> None:
    result = train_router(_no_signal_rows(0), tmp_path / "art", PRICES,
                          TrainConfig(featurizer="static", cv_folds=5, probes=0, token_bag="off"), featurizer=_featurizer())
    assert result.cv["shrinkage"]["chosen"] == 1.0
    router = load_router(tmp_path / "art")
    test = build_matrix(_no_signal_rows(1), router.models, router.manifest.prices)
    pred = router.predict(test.prompts)
    # One prediction per model whatever the prompt: the training rates.
    assert np.ptp(pred.quality, axis=0).max() < 1e-6
    ctx = _Context(test)
    cost = expected_cost(test.prompt_tokens, pred.completion_tokens, test.models, router.manifest.prices)
    routed, curve = ctx.sweep(pred.quality, cost, router.manifest.cost_scale_usd)
    mixing, _ = ctx.random_mix()
    assert routed.aiq == pytest.approx(mixing.aiq, abs=1e-6)
    # The sweep visits every single model on the mixing hull (here all three lie on it).
    singles = {(round(float(c), 12), round(float(q), 12)) for c, q in zip(test.cost.mean(0), test.score.mean(0), strict=True)}
    visited = {(round(c, 12), round(q, 12)) for c, q in zip(curve.cost, curve.quality, strict=True)}
    assert singles <= visited


def test_signal_survives_the_shrinkage(trained: Path) -> None:
    manifest = json.loads((trained / "manifest.json").read_text())
    assert manifest["cv"]["shrinkage"]["chosen"] < 1.0
    router = load_router(trained)
    q = router.predict([TEMPLATES["colour"].format("kettle"), TEMPLATES["sum"].format(9, "kettle")]).quality
    small = router.models.index("small")
    assert q[0, small] > q[1, small] + 0.3


def test_a_model_that_always_succeeds_does_not_make_the_signal_look_like_noise(tmp_path: Path) -> None:
    # One model without a single failure has nothing to calibrate; it must not read as a coin flip
    # in the cross-validation that chooses the shrinkage and drag the other model's signal with it.
    rows = _rows({"small": (1.0, 0.0), "large": (1.0, 1.0)})
    result = train_router(rows, tmp_path / "art", PRICES, TrainConfig(featurizer="static", cv_folds=3, probes=0, token_bag="off"),
                          featurizer=_featurizer())
    assert result.cv["shrinkage"]["chosen"] == 0.0
    router = load_router(tmp_path / "art")
    q = router.predict([TEMPLATES["colour"].format("kettle"), TEMPLATES["sum"].format(9, "kettle")]).quality
    small, large = router.models.index("small"), router.models.index("large")
    assert q[0, small] > 0.8 and q[1, small] < 0.2 and q[:, large].min() > 0.9


class PricedBackend:
    """router.lab.cli.RouterBackend with one priced model; its calls are never made (rows come from --outcomes)."""

    def open_models(self, config: Path) -> Models:
        async def no_calls(model: str, messages: list[dict[str, str]], max_tokens: int) -> CompletionOutcome:
            raise AssertionError("onboard --outcomes must not call the model")

        return Models(complete=no_calls, chat_models=("newcomer",), prices={"newcomer": PRICES["newcomer"]})


def test_cli_probes_and_onboard_from_outcomes_with_clear_errors(trained: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    runner = CliRunner()
    app = make_app(PricedBackend())
    probes = tmp_path / "probes.jsonl"
    res = runner.invoke(app, ["probes", "--artifact", str(trained), "--out", str(probes)])
    assert res.exit_code == 0, res.output
    assert [json.loads(line)["prompt"] for line in probes.read_text().splitlines()] == [p.prompt for p in read_probes(trained)]
    rows = tmp_path / "rows.jsonl"
    write_outcomes(rows, _rows({"newcomer": (0.0, 1.0)}, seed=3)[:40])
    config = tmp_path / "config.yaml"
    config.write_text("models: []\n")
    args = ["onboard", "--artifact", str(trained), "--model", "newcomer", "--config", str(config), "--out", str(tmp_path / "a2")]
    res = runner.invoke(app, [*args, "--outcomes", str(rows)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["model"] == "newcomer" and load_router(tmp_path / "a2").models[-1] == "newcomer"
    # Bad input: a clear message and a nonzero exit, never a traceback.
    res = runner.invoke(app, [*args[:4], "other", *args[5:], "--outcomes", str(rows)])
    assert res.exit_code == 2 and "not a chat model" in res.output
    # The probes carry no reference answers here: running them live needs --references.
    res = runner.invoke(app, args)
    assert res.exit_code == 1 and "no reference answer" in res.output
    res = runner.invoke(make_app(), [*args, "--outcomes", str(rows)])
    assert res.exit_code == 2 and "ttc router onboard" in res.output
    (tmp_path / "empty").mkdir()
    res = runner.invoke(app, ["probes", "--artifact", str(tmp_path / "empty"), "--out", str(probes)])
    assert res.exit_code == 1 and "no probe set" in res.output


def test_the_new_column_is_exactly_the_fitted_design_logit_for_an_ensemble_head() -> None:
    rng = np.random.default_rng(2)

    def member(d: int = 6, r: int = 3, m: int = 4) -> QualityHead:
        layers = [(rng.normal(size=(d, 5)).astype(np.float32), rng.normal(size=5).astype(np.float32)),
                  (rng.normal(size=(5, r)).astype(np.float32), rng.normal(size=r).astype(np.float32))]
        return QualityHead(np.zeros(d, np.float32), np.ones(d, np.float32), rng.normal(size=(m, r)).astype(np.float32),
                           rng.normal(size=m).astype(np.float32), layers=layers)

    head = member()
    head.members = [member(), member()]
    head.calib_a, head.calib_b = rng.uniform(0.5, 1.5, 4).astype(np.float32), rng.normal(size=4).astype(np.float32)
    head.prior, head.shrink = np.full(4, 0.5, np.float32), 0.0
    x = rng.normal(size=(60, 6)).astype(np.float32)
    y = (rng.random(60) < 0.5).astype(float)
    fit = NewModelFit().fit(head, x, y)
    extended = fit.extend(head)
    expected = np.hstack([design_features(head, x), np.ones((60, 1))]) @ fit.theta_
    np.testing.assert_allclose(extended.logits(x)[:, -1], expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(extended.logits(x)[:, :4], head.logits(x))


def _stacked_head(rng: np.random.Generator, d: int = 6, m: int = 4) -> QualityHead:
    """A head whose calibrator also uses kNN and task-prior terms, as `train` fits them."""
    from router.features.task_prior import TaskPrior

    head = QualityHead(np.zeros(d, np.float32), np.ones(d, np.float32), rng.normal(size=(m, d)).astype(np.float32),
                       rng.normal(size=m).astype(np.float32))
    head.calib_a, head.calib_b = rng.uniform(0.5, 1.5, m).astype(np.float32), rng.normal(size=m).astype(np.float32)
    keys = rng.normal(size=(40, d))
    head.knn_keys = (keys / np.linalg.norm(keys, axis=1, keepdims=True)).astype(np.float32)  # embedders L2-normalize
    head.knn_values = (rng.random((40, m)) < 0.5).astype(np.float32)
    head.knn_k, head.calib_knn = 5, rng.uniform(0.2, 1.0, m).astype(np.float32)
    head.task_prior = TaskPrior(["a", "b", "c"], np.zeros(d, np.float32), np.ones(d, np.float32),
                                rng.normal(size=(3, d)).astype(np.float32), np.zeros(3, np.float32),
                                rng.uniform(0.1, 0.9, (3, m)).astype(np.float32))
    head.calib_task = rng.uniform(0.2, 1.0, m).astype(np.float32)
    return head


def test_an_onboarded_model_borrows_the_known_models_knn_and_task_terms(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    head = _stacked_head(rng)
    x = rng.normal(size=(80, 6)).astype(np.float32)
    # The new model follows the known models' full (stacked) logits, so the stacked terms carry signal.
    y = (rng.random(80) < 1 / (1 + np.exp(-head.calibrated_logits(x)[:, :2].mean(axis=1)))).astype(float)
    # Offsets off here (only an infinite penalty): the column must be exactly the fitted design logit.
    fit = NewModelFit(task_penalties=(float("inf"),)).fit(head, x, y)
    extended = fit.extend(head)
    expected = np.hstack([design_features(head, x), np.ones((80, 1))]) @ fit.theta_
    np.testing.assert_allclose(extended.calibrated_logits(x)[:, -1], expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(extended.predict_proba(x)[:, :4], head.predict_proba(x), rtol=1e-6)

    # A second newcomer is fitted on all five columns, the first newcomer's borrowed terms included;
    # its own task offsets (forced on) add exactly their term.
    y2 = (rng.random(80) < 0.6).astype(float)
    fit2 = NewModelFit(task_penalties=(1.0,)).fit(extended, x, y2)
    assert fit2.task_offsets_ is not None and np.abs(fit2.task_offsets_).max() > 0
    twice = fit2.extend(extended)
    assert extended.task_prior is not None
    expected2 = (np.hstack([design_features(extended, x), np.ones((80, 1))]) @ fit2.theta_
                 + offset_logit(extended.task_prior.task_proba(x), fit2.task_offsets_))
    np.testing.assert_allclose(twice.calibrated_logits(x)[:, -1], expected2, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(twice.predict_proba(x)[:, :5], extended.predict_proba(x), rtol=1e-6)

    twice.save(tmp_path / "head.npz")
    np.testing.assert_allclose(QualityHead.load(tmp_path / "head.npz").predict_proba(x), twice.predict_proba(x), rtol=1e-5)


def test_design_features_describe_training_prompts_without_their_own_knn_outcomes() -> None:
    rng = np.random.default_rng(6)
    head = _stacked_head(rng)
    head.calib_task = head.task_prior = None
    keys = head.knn_keys
    assert keys is not None and head.knn_values is not None
    # Each key's own outcome is the opposite of all its neighbours': with itself counted, its kNN
    # term would lean toward its own outcome.
    head.knn_values[:] = 1.0
    head.knn_values[0] = 0.0
    with_self = head.calibrated_logits(keys[:1])
    without_self = head.calibrated_logits(keys[:1], exclude_self=True)
    assert np.all(without_self > with_self)
    np.testing.assert_allclose(design_features(head, keys[:1])[:, :4], without_self, rtol=1e-6)


def test_a_new_model_gets_its_own_task_offsets_where_the_probes_show_them() -> None:
    rng = np.random.default_rng(8)
    head = _stacked_head(rng)
    assert head.task_prior is not None
    head.task_prior.coef = head.task_prior.coef * 20  # a confident task classifier
    x = rng.normal(size=(150, 6)).astype(np.float32)
    task = head.task_prior.task_proba(x).argmax(axis=1)
    # Unlike every known model, the newcomer solves the first task and fails the others.
    y = (task == 0).astype(float)
    fit = NewModelFit().fit(head, x, y)
    assert fit.task_offsets_ is not None and np.isfinite(fit.task_penalty_)
    p_new = fit.extend(head).predict_proba(x)[:, -1]
    assert p_new[task == 0].mean() > 0.8 > 0.2 > p_new[task != 0].mean()

    # No task effect beyond the known models' (the newcomer is one of them): the offsets stay off.
    y_same = (rng.random(150) < head.predict_proba(x)[:, 0]).astype(float)
    same = NewModelFit().fit(head, x, y_same)
    assert same.task_offsets_ is None or np.abs(same.task_offsets_).max() < 0.5
