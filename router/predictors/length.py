"""Per-model output-length predictors (CASTILLO: length varies by prompt and model).

Ridge regression on log(1 + completion tokens), alpha by efficient
leave-one-out CV. Predictions are mapped back with Duan's smearing factor so
they estimate the *mean* token count, which is what expected cost needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)


@dataclass
class LengthModel:
    """Linear model per LLM on standardized features: tokens = smear * expm1(x.w + b)."""

    mean: np.ndarray  # (d,)
    scale: np.ndarray  # (d,)
    coef: np.ndarray  # (m, d)
    intercept: np.ndarray  # (m,)
    smear: np.ndarray  # (m,)

    def predict(self, features: np.ndarray) -> np.ndarray:
        xs = (features - self.mean) / self.scale
        log_tokens = xs @ self.coef.T + self.intercept
        return np.clip(np.expm1(np.clip(log_tokens, 0.0, 12.0)) * self.smear, 1.0, None)

    def save(self, path: Path) -> None:
        np.savez(path, mean=self.mean, scale=self.scale, coef=self.coef, intercept=self.intercept, smear=self.smear)

    @classmethod
    def load(cls, path: Path) -> LengthModel:
        with np.load(path, allow_pickle=False) as d:
            return cls(d["mean"], d["scale"], d["coef"], d["intercept"], d["smear"])


def fit_length_model(x: np.ndarray, tokens: np.ndarray, mask: np.ndarray) -> tuple[LengthModel, list[dict[str, float]]]:
    """Fit one ridge per model column of `tokens` (n, m) where `mask` is set."""
    mean = x.mean(axis=0).astype(np.float32)
    scale = x.std(axis=0).astype(np.float32)
    scale[scale < 1e-6] = 1.0
    xs = (x - mean) / scale
    n_models = tokens.shape[1]
    coef = np.zeros((n_models, x.shape[1]), dtype=np.float32)
    intercept = np.zeros(n_models, dtype=np.float32)
    smear = np.ones(n_models, dtype=np.float32)
    from sklearn.linear_model import RidgeCV  # lazy: keeps `import router` light for the gateway

    report: list[dict[str, float]] = []
    for m in range(n_models):
        rows = mask[:, m]
        target = np.log1p(tokens[rows, m])
        if rows.sum() < 5 or np.ptp(target) < 1e-9:
            # Constant lengths (e.g. the 256-token convention): predict the mean.
            intercept[m] = float(target.mean()) if rows.any() else float(np.log1p(256))
            report.append({"alpha": 0.0, "r2": 0.0, "mean_tokens": float(np.expm1(intercept[m]))})
            continue
        reg = RidgeCV(alphas=ALPHAS).fit(xs[rows], target)
        coef[m], intercept[m] = reg.coef_, reg.intercept_
        resid = target - reg.predict(xs[rows])
        smear[m] = float(np.mean(np.exp(resid)))
        report.append({"alpha": float(reg.alpha_), "r2": float(reg.score(xs[rows], target)),
                       "mean_tokens": float(tokens[rows, m].mean())})
    return LengthModel(mean, scale, coef, intercept, smear), report
