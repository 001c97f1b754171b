"""How far to shrink predicted quality toward each model's prior success rate, by cross-validation.

On near-saturated sets, or whenever the prompt carries no usable signal, a router's per-prompt
predictions are mostly noise, and routing on noise falls under the line of mixing the single
models blindly. Shrinking every prediction toward the model's mean success rate,
``p = (1 - s) * p + s * prior``, fixes that at ``s = 1``: every prompt then gets the same
prediction per model, and the cost-weight sweep walks the single models on the mixing hull.

``s`` is chosen on the training split only, from out-of-fold predictions, by Brier score
with the one-standard-error rule (the most shrunk setting whose per-prompt paired loss against
the best is within one standard error): the router keeps its per-prompt signal only where
cross-validation shows it pays. Not by routing AIQ: a curve's hull keeps its luckiest points,
so AIQ on a fold rewards noisy predictions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SHRINK_GRID = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)

def model_prior(y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Each model's mean observed outcome (0.5 where it has none)."""
    seen = mask.sum(axis=0)
    return np.where(seen > 0, (y * mask).sum(axis=0) / np.maximum(seen, 1), 0.5).astype(np.float32)


def shrink_toward(p: np.ndarray, prior: np.ndarray, s: float) -> np.ndarray:
    return (1.0 - s) * p + s * prior


class PriorShrinkage:
    """Chooses `shrink_` from `grid` by out-of-fold Brier score and the one-standard-error rule.

    `fit` takes out-of-fold predicted quality `p` (n, m), the outcomes and their mask. The
    standard error is that of the per-prompt paired loss difference against the best setting.
    """

    def __init__(self, grid: Sequence[float] = SHRINK_GRID, n_se: float = 1.0) -> None:
        self.grid = grid
        self.n_se = n_se

    def fit(self, p: np.ndarray, y: np.ndarray, mask: np.ndarray) -> PriorShrinkage:
        prior = model_prior(y, mask)
        seen = np.maximum(mask.sum(axis=1), 1)
        rows = mask.any(axis=1)
        # (grid, prompts): each prompt's Brier score over the models that answered it
        losses = np.stack([((((shrink_toward(p, prior, s) - y) ** 2) * mask).sum(axis=1) / seen)[rows]
                           for s in self.grid])
        mean = losses.mean(axis=1)
        best = int(np.argmin(mean))
        diff = losses - losses[best]
        se = diff.std(axis=1, ddof=1) / np.sqrt(max(diff.shape[1], 1)) if diff.shape[1] > 1 else np.zeros(len(self.grid))
        within = [i for i in range(len(self.grid)) if diff[i].mean() <= self.n_se * se[i] + 1e-12]
        chosen = max(within, key=lambda i: self.grid[i])
        self.shrink_ = float(self.grid[chosen])
        self.prior_ = prior
        self.report_ = {"grid": list(map(float, self.grid)), "cv_brier": mean.round(6).tolist(),
                        "best": float(self.grid[best]), "chosen": self.shrink_}
        return self

    def transform(self, p: np.ndarray) -> np.ndarray:
        return shrink_toward(p, self.prior_, self.shrink_)
