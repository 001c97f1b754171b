"""Quality/length predictors on synthetic data with a known answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from router.lab.selection import select_and_fit
from router.predictors.head import QualityHead
from router.predictors.length import LengthModel, fit_length_model
from router.predictors.quality import PerModelLogistic, SharedFactorModel, fit_new_model


def _synthetic(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model 0 succeeds when feature 0 > 0, model 1 when feature 1 > 0; first 4 columns are a unit 'embedding'."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, 4))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    x = np.hstack([emb, rng.normal(size=(n, 2))]).astype(np.float32)
    y = np.column_stack([(x[:, 0] > 0), (x[:, 1] > 0)]).astype(float)
    return x, y, np.ones_like(y, dtype=bool)


def test_selection_learns_signal_and_round_trips_with_members_and_knn(tmp_path: Path) -> None:
    x, y, mask = _synthetic()
    sel = select_and_fit(x[:200], y[:200], mask[:200],
                         [PerModelLogistic(c=1.0), SharedFactorModel(rank=4, hidden=8, epochs=30)],
                         folds=3, embedding_dim=4)
    names = [c["kind"] for c in sel.cv["candidates"]]
    assert names == ["logistic", "shared", "ensemble"]
    p = sel.head.predict_proba(x[200:])
    accuracy = ((p > 0.5) == (y[200:] > 0.5)).mean()
    assert accuracy > 0.85
    # Force the richest form (ensemble member + kNN stack) through save/load.
    head = sel.head
    head.members = [PerModelLogistic(c=0.5).fit(x, y, mask).head()]
    head.knn_keys, head.knn_values, head.knn_k = x[:200, :4], y[:200], 5
    head.calib_knn = np.array([0.3, 0.2], dtype=np.float32)
    head.save(tmp_path / "q.npz")
    again = QualityHead.load(tmp_path / "q.npz")
    np.testing.assert_allclose(again.predict_proba(x[200:]), head.predict_proba(x[200:]), atol=1e-3)


def test_new_model_from_few_outcomes_uses_frozen_tower() -> None:
    x, y, mask = _synthetic(n=300)
    model = SharedFactorModel(rank=4, hidden=16, epochs=60, dropout=0.0, weight_decay=1e-4).fit(x[:250], y[:250], mask[:250])
    head = model.head()
    # A third "LLM" that behaves like model 0, learned from 30 outcomes only.
    vec, bias = fit_new_model(head, x[250:280], y[250:280, 0])
    z = head.embed(x[280:]) @ vec + bias
    assert ((z > 0) == (y[280:, 0] > 0.5)).mean() >= 0.75


def test_length_model_tracks_length_and_handles_constant(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    tokens = np.column_stack([np.exp(4 + x[:, 0]), np.full(200, 256.0)])
    model, report = fit_length_model(x, tokens, np.ones_like(tokens, dtype=bool))
    pred = model.predict(x)
    assert np.corrcoef(np.log(pred[:, 0]), x[:, 0])[0, 1] > 0.95
    np.testing.assert_allclose(pred[:, 1], 256.0, rtol=1e-3)
    assert report[1]["alpha"] == 0.0
    model.save(tmp_path / "l.npz")
    np.testing.assert_array_equal(LengthModel.load(tmp_path / "l.npz").predict(x), pred)
