"""Token-bag (LSA) features: fit, serving path, artifact round trip, and the CV-gated default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from contracts.outcomes import OutcomeRow
from contracts.prices import Price
from router.api import load_router
from router.features import PromptFeaturizer
from router.features.bow import fit_token_bag
from router.features.sentence import resolve_model_path
from router.features.static import StaticEmbedder
from router.lab.train import TrainConfig, train_router

NOUNS = ["apple", "river", "garden", "window", "castle", "pencil", "forest", "bottle", "engine", "ticket",
         "violin", "carpet", "rocket", "basket", "mirror", "island", "candle", "helmet", "jacket", "ladder"]
# Two tasks with the same length and shape; only one word (same length) tells them apart.
TASKS = {"colour": "Please describe the colour of the {} in one word.",
         "flavor": "Please describe the flavor of the {} in one word."}
PRICES = {"cheap": Price(input_per_1m=0.5, output_per_1m=0.5), "dear": Price(input_per_1m=10.0, output_per_1m=30.0)}


def _static(constant: bool = False) -> StaticEmbedder:
    tok = (Path(resolve_model_path("all-MiniLM-L6-v2")) / "tokenizer.json").read_text()
    rng = np.random.default_rng(0)
    table = np.ones((30522, 8), dtype=np.float32) if constant else rng.normal(size=(30522, 8)).astype(np.float32)
    return StaticEmbedder(table, tok)


def _prompts() -> tuple[list[str], list[str]]:
    prompts, tasks = [], []
    for i in range(6):
        for noun in NOUNS:
            for task, template in TASKS.items():
                prompts.append(template.format(noun) + " " * i)  # distinct texts, same tokens
                tasks.append(task)
    return prompts, tasks


def test_token_bag_separates_word_level_tasks_and_round_trips(tmp_path: Path) -> None:
    prompts, tasks = _prompts()
    # A constant token table hides the task from the embedding; only the bag can see it.
    feat = PromptFeaturizer(_static(constant=True), token_bag_dims=4).fit(prompts)
    assert feat.token_bag is not None and feat.token_bag.dim == 4
    x = feat.transform(prompts)
    assert x.shape == (len(prompts), 8 + 18 + 4)
    bag = x[:, -4:]
    is_colour = np.array(tasks) == "colour"
    # Some LSA direction separates the two tasks perfectly.
    a, b = bag[is_colour], bag[~is_colour]
    assert any(a[:, j].min() > b[:, j].max() or a[:, j].max() < b[:, j].min() for j in range(4))
    # [CLS]/[SEP] and tokens seen in a single prompt are not in the vocabulary.
    specials = feat.embedder.special_ids
    assert 101 in specials and 102 in specials
    assert not set(specials) & set(feat.token_bag.vocab.tolist())
    # One prompt at a time (the serving path) equals the batch; the artifact reproduces it.
    np.testing.assert_allclose(feat.transform(prompts[:1]), x[:1], atol=1e-6)
    spec = feat.save(tmp_path)
    assert spec["token_bag"] == {"file": "token_bag.npz", "dims": 4}
    again = PromptFeaturizer.load(tmp_path, spec)
    np.testing.assert_allclose(again.transform(prompts[:5]), x[:5], atol=2e-3)


def test_fit_token_bag_by_hand() -> None:
    bag = fit_token_bag([[5, 6, 6], [5, 7], [9]], dims=1)
    assert bag.vocab.tolist() == [5]  # only token 5 is in two prompts
    np.testing.assert_allclose(np.abs(bag.transform([[5, 5], [8], []])[:, 0]), [1.0, 0.0, 0.0], atol=1e-6)
    with pytest.raises(ValueError, match="too few tokens"):
        fit_token_bag([[1], [2]], dims=2)


def _rows(prompts: list[str], tasks: list[str]) -> list[OutcomeRow]:
    """`cheap` answers colour questions, fails flavor ones; `dear` answers 80% of everything."""
    rng = np.random.default_rng(1)
    rows = []
    for p, t in zip(prompts, tasks, strict=True):
        rows.append(OutcomeRow(prompt=p, model="cheap", score=float(t == "colour"), task=t, prompt_tokens=12,
                               completion_tokens=5))
        rows.append(OutcomeRow(prompt=p, model="dear", score=float(rng.random() < 0.8), task=t, prompt_tokens=12,
                               completion_tokens=5))
    return rows


def test_auto_keeps_the_bag_when_cv_says_it_routes_better(tmp_path: Path) -> None:
    prompts, tasks = _prompts()
    rows = _rows(prompts, tasks)
    feat = PromptFeaturizer(_static(constant=True), token_bag_dims=4)
    result = train_router(rows, tmp_path / "art", PRICES, TrainConfig(featurizer="static", cv_folds=3), featurizer=feat)
    info = result.cv["token_bag"]
    assert info["mode"] == "auto" and info["used"] is True
    assert info["cv_with"] > info["cv_without"]
    router = load_router(tmp_path / "art")
    assert router.featurizer.token_bag is not None
    # Served from the artifact: the cheap model only where it succeeds.
    quality = router.predict(["Please describe the colour of the kettle in one word.",
                              "Please describe the flavor of the kettle in one word."]).quality
    assert quality[0, 0] > 0.8 and quality[1, 0] < 0.2
    # `off` trains no bag; `on` needs a static featurizer.
    off = train_router(rows, tmp_path / "off", PRICES, TrainConfig(featurizer="static", cv_folds=3, token_bag="off"),
                       featurizer=PromptFeaturizer(_static(constant=True)))
    assert off.cv["token_bag"]["used"] is False and not (tmp_path / "off" / "token_bag.npz").exists()
    with pytest.raises(ValueError, match="token_bag=.on. needs one of the featurizers"):
        train_router(rows, tmp_path / "bad", PRICES, TrainConfig(featurizer="minilm", token_bag="on"))


def test_task_prior_c_is_chosen_by_out_of_fold_log_loss() -> None:
    from router.features.task_prior import fit_task_prior, out_of_fold

    rng = np.random.default_rng(0)
    task_ids = rng.integers(0, 3, size=240)
    x = (np.eye(3, 40)[task_ids] * 0.7 + rng.normal(size=(240, 40))).astype(np.float32)  # weak signal, many noise columns
    tasks = [f"t{t}" for t in task_ids]
    y = (rng.random((240, 2)) < 0.5).astype(float)
    mask = np.ones_like(y, dtype=bool)
    splits = [(np.arange(120, 240), np.arange(0, 120)), (np.arange(0, 120), np.arange(120, 240))]
    feats, c, losses = out_of_fold(x, tasks, y, mask, splits, grid=(0.01, 100.0))
    assert str(c) == min(losses, key=lambda k: losses[k]) and c == 0.01  # the nearly unregularized fit overfits the noise
    single, _, _ = out_of_fold(x, tasks, y, mask, splits, grid=(0.01,))
    np.testing.assert_allclose(feats, single)
    assert fit_task_prior(x, tasks, y, mask, c=c).task_proba(x).shape == (240, 3)
