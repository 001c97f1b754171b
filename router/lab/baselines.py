"""Baseline score predictors, trained on the plain prompt embedding only.

Each returns predicted quality (n_test, m); the evaluation routes them with
the same score - lambda * cost rule as the router, so the comparison isolates
the quality of the predictions.

* kNN: mean outcome of the k nearest training prompts (cosine), k chosen by
  K-fold CV on the training data only.
* logistic: L2 logistic regression per model (C by CV).
* MLP: one multi-output MLP regressor on the scores.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import KFold
from sklearn.neighbors import KNeighborsRegressor
from sklearn.neural_network import MLPRegressor

from router.predictors.quality import PerModelLogistic

K_GRID = (5, 10, 20, 40, 80, 160)


def _cv_mse(make, x: np.ndarray, y: np.ndarray, mask: np.ndarray, folds: int, seed: int) -> float:  # type: ignore[no-untyped-def]
    err = 0.0
    for tr, va in KFold(folds, shuffle=True, random_state=seed).split(x):
        pred = make().fit(x[tr], y[tr], mask[tr]).predict(x[va])
        err += float((((pred - y[va]) ** 2) * mask[va]).sum())
    return err / mask.sum()


class KnnScores:
    def __init__(self, k: int = 20) -> None:
        self.k = k

    def fit(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> KnnScores:
        # Missing outcomes are rare (complete sets); fill with the model mean.
        fill = np.where(mask, y, (y * mask).sum(0) / np.maximum(mask.sum(0), 1))
        self.model_ = KNeighborsRegressor(n_neighbors=min(self.k, len(x)), metric="cosine", algorithm="brute").fit(x, fill)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model_.predict(x)).reshape(len(x), -1)


def fit_knn(x: np.ndarray, y: np.ndarray, mask: np.ndarray, folds: int = 5, seed: int = 0) -> tuple[KnnScores, int]:
    ks = [k for k in K_GRID if k < len(x) * (folds - 1) / folds] or [1]
    errors = {k: _cv_mse(lambda k=k: KnnScores(k), x, y, mask, folds, seed) for k in ks}
    best = min(errors, key=errors.__getitem__)
    return KnnScores(best).fit(x, y, mask), best


class LogisticScores:
    def __init__(self, c: float = 0.1) -> None:
        self.c = c

    def fit(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> LogisticScores:
        self.model_ = PerModelLogistic(c=self.c).fit(x, y, mask)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        head = self.model_.head()
        return 1.0 / (1.0 + np.exp(-head.logits(x)))


def fit_logistic(x: np.ndarray, y: np.ndarray, mask: np.ndarray, folds: int = 5, seed: int = 0) -> tuple[LogisticScores, float]:
    errors = {c: _cv_mse(lambda c=c: LogisticScores(c), x, y, mask, folds, seed) for c in (0.01, 0.1, 1.0)}
    best = min(errors, key=errors.__getitem__)
    return LogisticScores(best).fit(x, y, mask), best


class MlpScores:
    def __init__(self, hidden: int = 128, alpha: float = 1e-2, seed: int = 0) -> None:
        self.hidden = hidden
        self.alpha = alpha
        self.seed = seed

    def fit(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> MlpScores:
        fill = np.where(mask, y, (y * mask).sum(0) / np.maximum(mask.sum(0), 1))
        self.model_ = MLPRegressor(
            hidden_layer_sizes=(self.hidden,), alpha=self.alpha, early_stopping=True,
            max_iter=300, random_state=self.seed,
        ).fit(x, fill)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(self.model_.predict(x)).reshape(len(x), -1), 0.0, 1.0)
