"""Quality estimators: P(model m answers prompt x well), for every model.

* ``PerModelLogistic``: an L2 logistic regression per model (scikit-learn).
* ``SharedFactorModel``: one network maps a prompt to an r-dim vector and
  each LLM has its own r-dim vector, matrix-factorization style. Models share
  what makes a prompt hard, so every model's predictions use all models'
  outcomes, and a new model can be added from few outcomes by fitting only
  its vector (`fit_new_model`).

Scores may be fractional; both estimators train on soft labels. Each fitted
estimator exports a `QualityHead` (numpy only), which is what serving loads.
Choosing among them by cross-validation and calibrating the winner is training
work: `router.lab.selection`.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from sklearn.linear_model import LogisticRegression

from router.predictors.head import QualityHead


def _standardize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-6] = 1.0  # constant columns stay constant instead of exploding
    return mean.astype(np.float32), scale.astype(np.float32)


class QualityEstimator(Protocol):
    def fit(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> QualityEstimator: ...

    def head(self) -> QualityHead: ...

    def get_params(self) -> dict[str, Any]: ...


class PerModelLogistic:
    """One L2 logistic regression per model on standardized features."""

    def __init__(self, c: float = 0.1, max_iter: int = 500) -> None:
        self.c = c
        self.max_iter = max_iter

    def get_params(self) -> dict[str, Any]:
        return {"kind": "logistic", "c": self.c}

    def fit(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> PerModelLogistic:
        self.mean_, self.scale_ = _standardize(x)
        xs = (x - self.mean_) / self.scale_
        n_models = y.shape[1]
        self.coef_ = np.zeros((n_models, x.shape[1]), dtype=np.float32)
        self.intercept_ = np.zeros(n_models, dtype=np.float32)
        for m in range(n_models):
            rows = mask[:, m]
            xm, ym = xs[rows], y[rows, m]
            # Soft labels: each prompt appears as a positive with weight y and
            # a negative with weight 1 - y (exact for the log-likelihood).
            xx = np.vstack([xm, xm])
            yy = np.concatenate([np.ones(len(ym)), np.zeros(len(ym))])
            ww = np.concatenate([ym, 1.0 - ym])
            keep = ww > 0
            if len(np.unique(yy[keep])) < 2:
                p = float(np.clip(ym.mean(), 1e-3, 1 - 1e-3))
                self.intercept_[m] = np.log(p / (1 - p))
                continue
            clf = LogisticRegression(C=self.c, max_iter=self.max_iter)
            clf.fit(xx[keep], yy[keep], sample_weight=ww[keep])
            self.coef_[m] = clf.coef_[0]
            self.intercept_[m] = clf.intercept_[0]
        return self

    def head(self) -> QualityHead:
        return QualityHead(self.mean_, self.scale_, self.coef_, self.intercept_)


class SharedFactorModel:
    """Prompt tower (MLP) -> r-dim vector, dotted with a learned vector per LLM."""

    def __init__(
        self,
        rank: int = 32,
        hidden: int = 128,
        weight_decay: float = 1e-3,
        dropout: float = 0.1,
        epochs: int = 200,
        lr: float = 2e-3,
        batch_size: int = 256,
        patience: int = 15,
        seed: int = 0,
    ) -> None:
        self.rank = rank
        self.hidden = hidden
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.patience = patience
        self.seed = seed

    def get_params(self) -> dict[str, Any]:
        return {"kind": "shared", "rank": self.rank, "hidden": self.hidden,
                "weight_decay": self.weight_decay, "dropout": self.dropout}

    def fit(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> SharedFactorModel:
        import torch
        from torch import nn

        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        self.mean_, self.scale_ = _standardize(x)
        xs = torch.tensor((x - self.mean_) / self.scale_, dtype=torch.float32)
        yt = torch.tensor(y, dtype=torch.float32)
        mt = torch.tensor(mask, dtype=torch.float32)
        n, d = xs.shape
        tower = nn.Sequential(
            nn.Dropout(self.dropout), nn.Linear(d, self.hidden), nn.GELU(approximate="tanh"),
            nn.Dropout(self.dropout), nn.Linear(self.hidden, self.rank),
        )
        vectors = nn.Parameter(torch.randn(y.shape[1], self.rank) * 0.1)
        prior = np.clip((y * mask).sum(0) / np.maximum(mask.sum(0), 1), 1e-3, 1 - 1e-3)
        bias = nn.Parameter(torch.tensor(np.log(prior / (1 - prior)), dtype=torch.float32))
        params = [*tower.parameters(), vectors, bias]
        opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        # 10% of prompts decide when to stop; no separate epoch search needed.
        perm = rng.permutation(n)
        n_val = max(1, n // 10) if n >= 20 else 0
        val_idx, tr_idx = perm[:n_val], perm[n_val:]
        bce = nn.BCEWithLogitsLoss(reduction="none")

        def loss_on(idx: np.ndarray) -> torch.Tensor:
            z = tower(xs[idx]) @ vectors.T + bias
            mm = mt[idx]
            return (bce(z, yt[idx]) * mm).sum() / mm.sum().clamp(min=1.0)

        best = (float("inf"), None)
        stale = 0
        for _ in range(self.epochs):
            tower.train()
            order = rng.permutation(tr_idx)
            for start in range(0, len(order), self.batch_size):
                opt.zero_grad()
                loss = loss_on(order[start : start + self.batch_size])
                loss.backward()
                opt.step()
            if n_val == 0:
                continue
            tower.eval()
            with torch.no_grad():
                val = float(loss_on(val_idx))
            if val < best[0] - 1e-5:
                state = ([p.detach().clone() for p in tower.parameters()], vectors.detach().clone(), bias.detach().clone())
                best, stale = (val, state), 0
            else:
                stale += 1
                if stale >= self.patience:
                    break
        if best[1] is not None:
            tower_params, v, b = best[1]
            with torch.no_grad():
                for p, saved in zip(tower.parameters(), tower_params, strict=True):
                    p.copy_(saved)
                vectors.copy_(v)
                bias.copy_(b)
        lin1, lin2 = tower[1], tower[4]
        self.layers_ = [
            (lin1.weight.detach().numpy().T.copy(), lin1.bias.detach().numpy().copy()),
            (lin2.weight.detach().numpy().T.copy(), lin2.bias.detach().numpy().copy()),
        ]
        self.vectors_ = vectors.detach().numpy().copy()
        self.bias_ = bias.detach().numpy().copy()
        return self

    def head(self) -> QualityHead:
        return QualityHead(self.mean_, self.scale_, self.vectors_, self.bias_, layers=self.layers_)


def fit_new_model(head: QualityHead, x: np.ndarray, y: np.ndarray, c: float = 1.0) -> tuple[np.ndarray, float]:
    """Vector and bias for a new LLM from few outcomes, with the prompt tower frozen."""
    z = head.embed(x)
    xx = np.vstack([z, z])
    yy = np.concatenate([np.ones(len(y)), np.zeros(len(y))])
    ww = np.concatenate([y, 1.0 - y])
    clf = LogisticRegression(C=c, max_iter=1000).fit(xx, yy, sample_weight=ww)
    return clf.coef_[0].astype(np.float32), float(clf.intercept_[0])
