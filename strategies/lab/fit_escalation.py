"""Fit `cascade`'s :class:`~strategies.escalation.EscalationModel` on recorded answers of one model.

A standardized logistic regression over :func:`~strategies.escalation.answer_features`
(and optionally the router's prior), its C chosen by grouped cross-validated
log-loss; scikit-learn is needed here only, never to serve the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from ..escalation import FEATURES, PRIOR_FEATURE, EscalationModel, answer_features, logit

# C for the logistic fit, chosen by cross-validated log-loss on the training answers.
C_GRID: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0)


def fit_escalation(
    prompts: Sequence[str], texts: Sequence[str], right: ArrayLike, *, model: str,
    priors: ArrayLike | None = None, folds: int = 5, seed: int = 0,
) -> EscalationModel:
    """Fit on recorded answers of one model: `right[i]` >= 0.5 when `texts[i]` answered `prompts[i]` correctly.

    `priors`, when given, are the router's P(right) for each prompt; they must be
    out-of-sample (e.g. out-of-fold), or the fit will lean on them too much.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss, roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict

    y = np.asarray(right, float) >= 0.5
    prior_values = None if priors is None else np.asarray(priors, float)
    if not len(prompts) == len(texts) == len(y) or (prior_values is not None and len(prior_values) != len(y)):
        raise ValueError("prompts, texts, right (and priors) must have one entry per answer")
    if y.all() or not y.any() or min(y.sum(), (~y).sum()) < folds or len(set(prompts)) < folds:
        raise ValueError(f"need at least {folds} right and {folds} wrong answers, to {folds} or more prompts, to fit "
                         f"(got {int(y.sum())} right of {len(y)}, {len(set(prompts))} prompts)")
    x = np.array([answer_features(p, t) for p, t in zip(prompts, texts, strict=True)], dtype=float)
    names = list(FEATURES)
    if prior_values is not None:
        x = np.hstack([x, np.array([[logit(float(p))] for p in prior_values])])
        names.append(PRIOR_FEATURE)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0  # a constant feature carries no signal; keep it inert
    z = (x - mean) / scale
    # Several answers to one prompt (samples) stay in one fold, or CV would grade on seen prompts.
    splitter = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
    groups = np.unique(np.asarray(prompts, dtype=object), return_inverse=True)[1]
    trials = [(float(log_loss(y, oof)), c, oof) for c in C_GRID
              for oof in [cross_val_predict(LogisticRegression(C=c, max_iter=5000), z, y, groups=groups,
                                            cv=splitter, method="predict_proba")[:, 1]]]
    loss, c, oof = min(trials, key=lambda t: t[0])
    fitted = LogisticRegression(C=c, max_iter=5000).fit(z, y)
    cv = {"n": float(len(y)), "base_rate": float(y.mean()), "C": c, "log_loss": loss, "auc": float(roc_auc_score(y, oof))}
    return EscalationModel(
        model=model, features=names, mean=mean.tolist(), scale=scale.tolist(), coef=fitted.coef_[0].tolist(),
        intercept=float(fitted.intercept_[0]),
        default_prior=float(np.mean(prior_values)) if prior_values is not None else None, cv=cv,
    )
