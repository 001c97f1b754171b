"""Decision policy over predicted quality and expected cost.

Two rules, both vectorized over prompts:

* ``utility``: argmax of quality - cost_weight * cost / cost_scale. The cost
  is divided by the artifact's `cost_scale_usd` (the dearest model's mean
  cost on the training data), so `cost_weight` is unit-free: 1.0 means one
  full point of success probability is worth one average dearest-model call.
* ``tolerance``: the cheapest model whose predicted quality is within
  `tolerance` of the best predicted quality.

Ties go to the cheaper model.
"""

from __future__ import annotations

import numpy as np


def choose_by_utility(quality: np.ndarray, cost: np.ndarray, cost_weight: float, cost_scale: float = 1.0) -> np.ndarray:
    """Index of the chosen model per row of (n, m) matrices."""
    q = np.atleast_2d(quality)
    c = np.atleast_2d(cost)
    utility = q - cost_weight * c / cost_scale
    # Lexicographic tie-break on cost: add a vanishing cost penalty.
    best = utility.max(axis=1, keepdims=True)
    tied = utility >= best - 1e-12
    masked_cost = np.where(tied, c, np.inf)
    return np.argmin(masked_cost, axis=1)


def choose_by_tolerance(quality: np.ndarray, cost: np.ndarray, tolerance: float) -> np.ndarray:
    q = np.atleast_2d(quality)
    c = np.atleast_2d(cost)
    ok = q >= q.max(axis=1, keepdims=True) - tolerance
    return np.argmin(np.where(ok, c, np.inf), axis=1)


def cost_weight_grid(quality: np.ndarray, cost: np.ndarray, cost_scale: float, size: int = 400) -> np.ndarray:
    """Cost weights spanning every decision change, from 'always dearest' to 'always cheapest'.

    The switch points between two models are dq / dc (scaled); a log grid over
    their observed range, plus 0 and a large value, traces the whole curve.
    """
    q = np.atleast_2d(quality)
    c = np.atleast_2d(cost) / cost_scale
    dq = q[:, :, None] - q[:, None, :]
    dc = c[:, :, None] - c[:, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = dq / dc
    ratio = ratio[(dc > 0) & (dq > 0)]
    ratio = ratio[np.isfinite(ratio) & (ratio > 0)]
    if ratio.size == 0:
        return np.array([0.0, 1e9])
    lo, hi = np.quantile(ratio, 0.0005), np.quantile(ratio, 0.9995)
    grid = np.geomspace(max(lo * 0.5, 1e-9), hi * 2.0, size)
    return np.concatenate([[0.0], grid, [hi * 1e3 + 1e9]])
