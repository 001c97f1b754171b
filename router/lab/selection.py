"""Choosing and calibrating the quality estimator: training-only.

Candidates (`router.predictors.quality`) are compared by K-fold
cross-validation on prompts (Brier score, or the AIQ of routing the training
prompts when costs are known); the chosen estimator is refit on all data and
Platt-calibrated per model on its out-of-fold logits, optionally stacked with a
kNN estimate and a task prior. The result is a `QualityHead` that serving loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold

from router.features.task_prior import CLASSIFIER_GRID, fit_task_prior, usable_tasks
from router.features.task_prior import out_of_fold as task_prior_oof
from router.lab.metrics import aiq, best_single_index, match_best_cost_fraction
from router.lab.shrinkage import PriorShrinkage
from router.policy import choose_by_utility, cost_weight_grid
from router.predictors.head import QualityHead, knn_logit, sigmoid
from router.predictors.quality import PerModelLogistic, QualityEstimator, SharedFactorModel


def platt(logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Platt scaling w.z + b on out-of-fold logits (one or more columns; soft labels allowed)."""
    z = logits.reshape(len(y), -1)
    xx = np.vstack([z, z])
    yy = np.concatenate([np.ones(len(y)), np.zeros(len(y))])
    ww = np.concatenate([y, 1.0 - y])
    keep = ww > 0
    if len(np.unique(yy[keep])) < 2:
        return np.eye(1, z.shape[1])[0], 0.0
    clf = LogisticRegression(C=1e4, max_iter=1000).fit(xx[keep], yy[keep], sample_weight=ww[keep])
    return clf.coef_[0], float(clf.intercept_[0])


KNN_GRID = (10, 20, 40, 80, 160)


def _oof_knn(emb: np.ndarray, y: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]], k: int) -> np.ndarray:
    out = np.zeros_like(y, dtype=np.float64)
    for tr, va in splits:
        out[va] = knn_logit(emb[va], emb[tr], y[tr], k)
    return out


def default_candidates() -> list[QualityEstimator]:
    # Kept small on purpose: every candidate costs `folds` + 1 fits, and the
    # wider grid we tried (C=0.1, rank 32 / hidden 128) never won on CV.
    return [
        PerModelLogistic(c=0.003),
        PerModelLogistic(c=0.01),
        SharedFactorModel(rank=16, hidden=64, weight_decay=1e-1, dropout=0.3),
    ]


@dataclass
class SelectionResult:
    head: QualityHead
    params: dict[str, Any]
    cv: dict[str, Any]


def _brier(p: np.ndarray, y: np.ndarray, mask: np.ndarray) -> float:
    return float(((p - y) ** 2 * mask).sum() / mask.sum())


def _auc(p: np.ndarray, y: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    hard = y >= 0.5
    if hard.all() or (~hard).all():
        return None
    return float(roc_auc_score(hard, p))


def select_and_fit(
    x: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray,
    candidates: list[QualityEstimator] | None = None,
    folds: int = 5,
    seed: int = 0,
    progress: bool = False,
    embedding_dim: int | None = None,
    tasks: Sequence[str | None] | None = None,
    cost: np.ndarray | None = None,
    task_c_grid: Sequence[float] = CLASSIFIER_GRID,
) -> SelectionResult:
    """K-fold CV over candidates; refit the best on everything; calibrate it.

    With `embedding_dim` (the leading feature columns are a normalized
    embedding), the calibrator may also stack a kNN estimate; with `tasks` (the
    rows' task labels, e.g. MMLU subjects), a task-prior estimate
    (router.features.task_prior), its classifier's C chosen from `task_c_grid`. Each is kept only in the combination that
    lowers the out-of-fold Brier score.

    With `cost` (observed USD per prompt and model, complete rows), candidates
    are chosen by the AIQ of routing the training prompts on their
    out-of-fold predictions instead of by Brier score: on RouteLLM GSM8K the
    Brier winner (often the shared factor model, by a hair) routed worse.
    """
    cands = candidates or default_candidates()
    n = len(x)
    folds = max(2, min(folds, n // 4)) if n >= 8 else 2
    kfold = KFold(n_splits=folds, shuffle=True, random_state=seed)
    splits = list(kfold.split(x))
    results: list[dict[str, Any]] = []
    oof_logits: list[np.ndarray] = []
    iterator: Any = cands
    if progress:
        from tqdm import tqdm

        iterator = tqdm(cands, desc="quality CV", unit="candidate")
    for est in iterator:
        z = np.zeros_like(y, dtype=np.float64)
        for tr, va in splits:
            fitted = _clone(est).fit(x[tr], y[tr], mask[tr])
            z[va] = fitted.head().logits(x[va])
        p = sigmoid(z)
        results.append({**est.get_params(), "brier": _brier(p, y, mask)})
        oof_logits.append(z)
    # The mean logit of all candidates is a candidate too: with weak per-prompt
    # signal, averaging differently-biased estimators mostly removes variance.
    if len(cands) > 1:
        z_ens = np.mean(oof_logits, axis=0)
        results.append({"kind": "ensemble", "members": [r.copy() for r in results],
                        "brier": _brier(sigmoid(z_ens), y, mask)})
        oof_logits.append(z_ens)
    by_aiq = cost is not None and bool(mask.all()) and bool(np.isfinite(cost).all())
    if by_aiq:
        assert cost is not None
        for r, zc in zip(results, oof_logits, strict=True):
            r["oof_aiq"] = _oof_aiq(zc, y, cost)
        best_i = int(np.argmax([r["oof_aiq"] - 1e-9 * r["brier"] for r in results]))
    else:
        best_i = int(np.argmin([r["brier"] for r in results]))
    if best_i == len(cands):
        heads = [_clone(c).fit(x, y, mask).head() for c in cands]
        head = heads[0]
        head.members = heads[1:]
        params: dict[str, Any] = {"kind": "ensemble", "members": [c.get_params() for c in cands]}
    else:
        head = _clone(cands[best_i]).fit(x, y, mask).head()
        params = cands[best_i].get_params()
    z = oof_logits[best_i]
    n_models = y.shape[1]
    a = np.ones(n_models, dtype=np.float32)
    b = np.zeros(n_models, dtype=np.float32)
    for m in range(n_models):
        rows = mask[:, m]
        w, b[m] = platt(z[rows, m], y[rows, m])
        a[m] = w[0]
    head.calib_a, head.calib_b = a, b
    calibrated = sigmoid(a * z + b)
    # Further calibrator inputs, each an out-of-fold logit per (prompt, model):
    # kept only in the combination that lowers the out-of-fold Brier score.
    inputs: dict[str, np.ndarray] = {}
    stack_info: dict[str, Any] = {"used": False}
    task_info: dict[str, Any] = {"used": False}
    if embedding_dim:
        # kNN needs complete rows; missing outcomes take the model's mean.
        filled = np.where(mask, y, (y * mask).sum(0) / np.maximum(mask.sum(0), 1))
        emb = x[:, :embedding_dim]
        errors = {}
        for k in KNN_GRID:
            if k < len(x) * (folds - 1) / folds:
                pk = sigmoid(_oof_knn(emb, filled, splits, k))
                errors[k] = _brier(pk, y, mask)
        if errors:
            k_best = min(errors, key=errors.__getitem__)
            inputs["knn"] = _oof_knn(emb, filled, splits, k_best)
            stack_info = {"k": k_best, "knn_brier": errors[k_best], "used": False}
    if tasks is not None and len(usable_tasks(tasks)) >= 2:
        inputs["task"], task_c, task_losses = task_prior_oof(x, tasks, y, mask, splits, task_c_grid)
        task_info = {"n_tasks": len(usable_tasks(tasks)), "task_brier": _brier(sigmoid(inputs["task"]), y, mask),
                     "c": task_c, "task_logloss": task_losses, "used": False}
    platt_brier = _brier(calibrated, y, mask)
    best_combo: tuple[str, ...] = ()
    best: tuple[float, np.ndarray, np.ndarray, dict[str, np.ndarray]] = (platt_brier, a, b, {})
    tried: dict[str, float] = {"platt": platt_brier}
    for combo in _combinations(sorted(inputs)):
        a2, b2 = a.copy(), b.copy()
        extra = {name: np.zeros(n_models, dtype=np.float32) for name in combo}
        for m in range(n_models):
            rows = mask[:, m]
            cols = [z[rows, m]] + [inputs[name][rows, m] for name in combo]
            w, b2[m] = platt(np.column_stack(cols), y[rows, m])
            a2[m] = w[0]
            for i, name in enumerate(combo):
                extra[name][m] = w[1 + i]
        zz = a2 * z + b2 + sum(extra[name] * inputs[name] for name in combo)
        tried["+".join(("platt", *combo))] = err = _brier(sigmoid(zz), y, mask)
        if err < best[0]:
            best, best_combo = (err, a2, b2, extra), combo
    _, head.calib_a, head.calib_b, extra = best
    calibrated = sigmoid(head.calib_a * z + head.calib_b + sum(extra[name] * inputs[name] for name in best_combo))
    if "knn" in best_combo:
        stack_info["used"] = True
        head.calib_knn = extra["knn"]
        head.knn_keys, head.knn_values, head.knn_k = emb.astype(np.float32), filled.astype(np.float32), stack_info["k"]
    if "task" in best_combo:
        task_info["used"] = True
        head.calib_task = extra["task"]
        head.task_prior = fit_task_prior(x, tasks or [], y, mask, c=task_info["c"])
    stack_info.update({"stacked_brier": best[0], "platt_brier": platt_brier, "tried": tried})
    # Scored on cross-fitted predictions (each fold's calibrator fitted on the other folds): the
    # calibrator fitted on all rows would favour itself over the prior in-sample.
    shrinkage = PriorShrinkage().fit(_cross_fitted(z, [inputs[name] for name in best_combo], y, mask, splits), y, mask)
    calibrated = shrinkage.transform(calibrated)
    head.prior, head.shrink = shrinkage.prior_, shrinkage.shrink_
    per_model = []
    for m in range(n_models):
        rows = mask[:, m]
        per_model.append({
            "brier": _brier(calibrated[rows, m], y[rows, m], np.ones(rows.sum())),
            "auc": _auc(calibrated[rows, m], y[rows, m]),
        })
    cv = {"folds": folds, "candidates": results, "selected": results[best_i], "knn_stack": stack_info,
          "task_prior": task_info, "shrinkage": shrinkage.report_,
          "calibrated_brier": _brier(calibrated, y, mask), "per_model": per_model}
    if by_aiq:
        assert cost is not None
        # The whole stack (calibrator fitted on these out-of-fold inputs) routing the training prompts.
        routed = routing_metrics(calibrated, y, cost)
        cv["stacked_oof_aiq"], cv["stacked_oof_match_best"] = routed["aiq"], routed["match_best"]
    return SelectionResult(head=head, params=params, cv=cv)


def _cross_fitted(z: np.ndarray, extra: list[np.ndarray], y: np.ndarray, mask: np.ndarray,
                  splits: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Calibrated out-of-fold quality with each fold's calibrator fitted on the other folds only.

    Each fold's inputs are centred first. A model fitted without a fold predicts that fold's mean
    from the other folds', which moves against the fold's own outcomes; with no per-prompt signal
    a calibrator learns that artefact (a negative slope) and beats the prior in CV but never at
    serving time. Centring keeps only the within-fold, per-prompt signal.
    """
    p = np.zeros_like(z, dtype=np.float64)
    for m in range(y.shape[1]):
        cols = np.column_stack([z[:, m]] + [e[:, m] for e in extra]).astype(np.float64)
        for _, va in splits:
            seen = va[mask[va, m]]
            if len(seen):
                cols[va] -= cols[seen].mean(axis=0)
        for tr, va in splits:
            rows = tr[mask[tr, m]]
            if len(rows) == 0:
                p[va, m] = 0.5
            elif np.ptp(y[rows, m]) == 0:
                # One outcome throughout: centring removed the level Platt scaling would have to
                # learn, and there is no slope to learn, so the fold's outcome is the prediction.
                p[va, m] = y[rows[0], m]
            else:
                w, b = platt(cols[rows], y[rows, m])
                p[va, m] = sigmoid(cols[va] @ w + b)
    return p


def _oof_aiq(z: np.ndarray, y: np.ndarray, cost: np.ndarray) -> float:
    """AIQ of routing the training prompts by per-model Platt-scaled out-of-fold logits."""
    p = np.zeros_like(z)
    for m in range(y.shape[1]):
        w, b = platt(z[:, m], y[:, m])
        p[:, m] = sigmoid(w[0] * z[:, m] + b)
    return float(routing_metrics(p, y, cost)["aiq"] or 0.0)


def routing_metrics(p: np.ndarray, y: np.ndarray, cost: np.ndarray) -> dict[str, float | None]:
    """AIQ and cost to match the best single model (fraction of its cost) of routing prompts by
    predicted quality `p` over the cost-weight sweep, scored on outcomes `y` and costs `cost`."""
    mean_cost = cost.mean(axis=0)
    scale = float(mean_cost.max())
    rows = np.arange(len(y))
    costs, quals = [], []
    for weight in cost_weight_grid(p, cost, scale):
        choice = choose_by_utility(p, cost, float(weight), scale)
        costs.append(float(cost[rows, choice].mean()))
        quals.append(float(y[rows, choice].mean()))
    lo, hi = float(mean_cost.min()), float(mean_cost.max())
    q_single = y.mean(axis=0)
    best = best_single_index(list(q_single), list(mean_cost))
    return {"aiq": aiq(costs, quals, lo, hi) if hi > lo else float(np.mean(quals)),
            "match_best": match_best_cost_fraction(costs, quals, float(q_single[best]), float(mean_cost[best]))}


def _combinations(names: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset of the extra calibrator inputs (at most a handful)."""
    return [c for r in range(1, len(names) + 1) for c in combinations(names, r)]


def _clone(est: QualityEstimator) -> QualityEstimator:
    params = {k: v for k, v in vars(est).items() if not k.endswith("_")}
    return type(est)(**params)
