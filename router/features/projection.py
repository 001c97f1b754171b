"""Sentence-level distillation: a linear map from cheap features to the teacher's embedding.

The `static` embedder averages token vectors that MiniLM produced for each
token *in isolation*; on RouteLLM GSM8K its neighbourhoods route worse than
MiniLM's (kNN APGR ~0.56 vs ~0.62 over split seeds 0-4). MiniLM costs ~40 ms
per prompt here, far over the 5 ms decision budget, but training can afford
it. So `static-proj` fits, at train time, a ridge regression from the static
embedding plus text statistics to the MiniLM sentence embedding of every
training prompt, and serves the L2-normalized prediction in place of the
static embedding: one extra (d x 384) product per decision. Measured on GSM8K
(logistic heads, seeds 0-4): AIQ 0.775 -> 0.779, APGR 0.598 -> 0.619.

The map is fitted in-sample and applied the same way to training and serving
prompts, so the featurizer stays a fixed function of the prompt; heavy ridge
regularization (alpha by efficient leave-one-out CV, typically 100-300) keeps
training and held-out features alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

ALPHAS = (30.0, 100.0, 300.0, 1000.0, 3000.0)


@dataclass
class Projection:
    """standardize -> linear -> L2 normalize."""

    teacher: str
    mean: np.ndarray  # (d,)
    scale: np.ndarray  # (d,)
    coef: np.ndarray  # (d, e)
    intercept: np.ndarray  # (e,)
    alpha: float

    @property
    def dim(self) -> int:
        return int(self.coef.shape[1])

    def transform(self, features: np.ndarray) -> np.ndarray:
        out = ((features - self.mean) / self.scale) @ self.coef + self.intercept
        norm = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.maximum(norm, 1e-12)).astype(np.float32)

    def save(self, path: Path) -> None:
        np.savez(path, mean=self.mean, scale=self.scale, coef=self.coef, intercept=self.intercept,
                 alpha=np.array(self.alpha))

    @classmethod
    def load(cls, path: Path, teacher: str) -> Projection:
        with np.load(path, allow_pickle=False) as d:
            return cls(teacher, d["mean"], d["scale"], d["coef"], d["intercept"], float(d["alpha"]))


def fit_projection(features: np.ndarray, targets: np.ndarray, teacher: str) -> Projection:
    """Ridge (alpha by RidgeCV's efficient LOO) from standardized features to teacher embeddings."""
    from sklearn.linear_model import RidgeCV

    mean = features.mean(axis=0).astype(np.float32)
    scale = features.std(axis=0).astype(np.float32)
    scale[scale < 1e-6] = 1.0
    ridge = RidgeCV(alphas=ALPHAS).fit((features - mean) / scale, targets)
    return Projection(teacher, mean, scale, ridge.coef_.T.astype(np.float32),
                      np.asarray(ridge.intercept_, dtype=np.float32), float(ridge.alpha_))
