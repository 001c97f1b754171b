"""A new model's own per-task offsets, fitted on its probes (used by `router.lab.onboard`).

An onboarded model borrows the known models' task-prior terms, weighted as its logit weights
them. Where it is better or worse at a task than that mix says, a per-task offset gamma_t
corrects it. In the served head it is the new model's own task-prior term: rates sigmoid(gamma)
with calibration weight 1, so its logit gains logit(P(task | x) @ sigmoid(gamma)), which is
gamma_t for a prompt surely of task t and 0 where every gamma is 0. The offsets are ridge-
penalized toward 0 with a strength chosen by K-fold CV on the probes (infinite: no offsets), so
a task with a probe or two keeps an offset near zero.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from router.predictors.head import sigmoid

# Ridge strengths on gamma; inf leaves the borrowed task terms alone.
TASK_PENALTIES: tuple[float, ...] = (float("inf"), 10.0, 3.0, 1.0, 0.3)
# The clip TaskPrior applies before its logit, so fitting sees what serving computes.
_CLIP = 1e-3


def offset_logit(task_proba: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    q = np.clip(task_proba @ sigmoid(gamma), _CLIP, 1 - _CLIP)
    return np.log(q / (1 - q))


def fit_offsets(z: np.ndarray, task_proba: np.ndarray, y: np.ndarray, penalty: float) -> np.ndarray:
    """gamma minimizing the log loss of sigmoid(z + offset_logit(P, gamma)) plus penalty * |gamma|^2."""
    n_tasks = task_proba.shape[1]
    if not np.isfinite(penalty) or len(y) == 0:
        return np.zeros(n_tasks)

    def objective(gamma: np.ndarray) -> tuple[float, np.ndarray]:
        s = sigmoid(gamma)
        q = np.clip(task_proba @ s, _CLIP, 1 - _CLIP)
        t = z + np.log(q / (1 - q))
        loss = float(np.sum(y * np.logaddexp(0.0, -t) + (1 - y) * np.logaddexp(0.0, t)))
        dq = (sigmoid(t) - y) / (q * (1 - q))
        grad = (task_proba.T @ dq) * s * (1 - s) + 2 * penalty * gamma
        return loss + penalty * float(gamma @ gamma), grad

    return np.asarray(minimize(objective, np.zeros(n_tasks), jac=True, method="L-BFGS-B",
                               options={"maxiter": 200}).x)
