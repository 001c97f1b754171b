"""Onboarding: a new model joins a trained router from its outcomes on the probe set.

Every trained parameter stays frozen (prompt tower, the other models' vectors, biases and
calibrators, the featurizer); only the new model's column is fitted, so the other models'
predictions do not move. The new model's logit is parameterized as

    logit_new(x) = sum_m w_m * zhat_m(x) + mean_h e_h(x) . delta_h + beta

where zhat_m is known model m's calibrated logit (its kNN and task-prior terms included) and e_h
the prompt tower of ensemble member h. It is exactly a new vector and bias per member
(v_h = sum_m w_m a_m v_hm + delta_h) plus a column of the head's `stack_mix` (the new model's
kNN and task terms are the known models' weighted by w), so predictions stay a few small
matrix products. `w` starts at the average of the known models and is shrunk
toward it, `delta` toward zero; both strengths are chosen by K-fold CV on the probes (log loss).
With few probes the fit stays close to "like the known models, shifted"; more probes free it.
The length model gets a ridge row on the probes' token counts, alpha by CV.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from sklearn.model_selection import KFold

from contracts.outcomes import OutcomeRow
from contracts.prices import Price
from router.api import load_router
from router.artifact import MANIFEST, read_manifest, write_manifest
from router.lab.outcomes import prompt_key
from router.lab.probes import PROBES_FILE, design_features
from router.lab.task_offsets import TASK_PENALTIES, fit_offsets, offset_logit
from router.predictors.head import QualityHead, sigmoid
from router.predictors.length import LengthModel

# (lambda on w - w0, lambda on delta); inf freezes delta at zero (the known models' span only).
PENALTY_GRID: tuple[tuple[float, float], ...] = tuple(
    (lw, ld) for lw in (0.3, 3.0, 30.0) for ld in (1.0, 10.0, 100.0, float("inf"))
)
LENGTH_ALPHAS = (1.0, 10.0, 100.0, 1000.0, 10000.0)


def _softplus(t: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, t)


def _fit_penalized(d: np.ndarray, y: np.ndarray, n_known: int, w0: np.ndarray, lam_w: float, lam_d: float) -> np.ndarray:
    """Logistic regression on design `d` (last column: intercept, unpenalized) with soft labels."""
    n_delta = d.shape[1] - n_known - 1
    use_delta = np.isfinite(lam_d) and n_delta > 0
    cols = np.r_[np.arange(n_known), np.arange(n_known, n_known + n_delta) if use_delta else [], d.shape[1] - 1].astype(int)
    dd = d[:, cols]
    prior = np.zeros(len(cols))
    prior[:n_known] = w0
    lam = np.zeros(len(cols))
    lam[:n_known] = lam_w
    lam[n_known:-1] = lam_d if use_delta else 0.0

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        t = dd @ theta
        loss = float(np.sum(y * _softplus(-t) + (1 - y) * _softplus(t)))
        grad = dd.T @ (1.0 / (1.0 + np.exp(-np.clip(t, -40, 40))) - y)
        diff = theta - prior
        return loss + float(np.sum(lam * diff**2)), grad + 2 * lam * diff

    theta0 = prior.copy()
    res = minimize(objective, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 500})
    full = np.zeros(d.shape[1])
    full[cols] = res.x
    return full


def _log_loss(t: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(y * _softplus(-t) + (1 - y) * _softplus(t)))


class NewModelFit:
    """Fits a new model's column for a frozen `QualityHead`; sets `theta_`, `penalty_`, `prior_`."""

    def __init__(self, penalties: Sequence[tuple[float, float]] = PENALTY_GRID, folds: int = 5, seed: int = 0,
                 task_penalties: Sequence[float] = TASK_PENALTIES) -> None:
        self.penalties = penalties
        self.task_penalties = task_penalties
        self.folds = folds
        self.seed = seed

    def fit(self, head: QualityHead, x: np.ndarray, y: np.ndarray) -> NewModelFit:
        if len(y) < 2:
            raise ValueError("onboarding needs outcomes on at least 2 probe prompts")
        n_known = head.vectors.shape[0]
        d = np.hstack([design_features(head, x), np.ones((len(x), 1))])
        w0 = np.full(n_known, 1.0 / n_known)
        folds = min(self.folds, len(y))
        losses = np.zeros(len(self.penalties))
        cross_validated = folds >= 2 and 0 < y.mean() < 1
        splits = list(KFold(folds, shuffle=True, random_state=self.seed).split(d)) if cross_validated else []
        fold_thetas: list[list[np.ndarray]] = [[] for _ in self.penalties]  # per penalty, per fold
        for tr, va in splits:
            for i, (lw, ld) in enumerate(self.penalties):
                theta = _fit_penalized(d[tr], y[tr], n_known, w0, lw, ld)
                fold_thetas[i].append(theta)
                losses[i] += _log_loss(d[va] @ theta, y[va]) * len(va)
        # Without CV (too few probes, or all outcomes alike) the strongest pull toward the known models.
        best = int(np.argmin(losses)) if cross_validated else int(np.argmax([lw + ld for lw, ld in self.penalties]))
        self.penalty_ = self.penalties[best]
        self.theta_ = _fit_penalized(d, y, n_known, w0, *self.penalty_)
        self._fit_task_offsets(head, x, d, y, list(zip(splits, fold_thetas[best], strict=True)))
        self.prior_ = float((y.sum() + 0.5) / (len(y) + 1.0))  # smoothed probe success rate
        self.report_ = {"n": len(y), "mean_score": float(y.mean()), "penalty": {"known_weights": float(self.penalty_[0]),
                                                                 "own_vector": float(self.penalty_[1]) if np.isfinite(self.penalty_[1]) else "frozen"},
                        "cv_log_loss": float(losses[best] / len(y)) if cross_validated else None,
                        "weights_on_known": self.theta_[:n_known].round(4).tolist(),
                        "task_offsets": None if self.task_offsets_ is None else {
                            "penalty": self.task_penalty_, "max_abs": float(np.abs(self.task_offsets_).max())}}
        return self

    def _fit_task_offsets(self, head: QualityHead, x: np.ndarray, d: np.ndarray, y: np.ndarray,
                          folds: list[tuple[tuple[np.ndarray, np.ndarray], np.ndarray]]) -> None:
        """The new model's own per-task offsets (router.lab.task_offsets), strength by CV on the
        probes: `folds` are the CV splits with the column fitted on each one's training part."""
        self.task_offsets_: np.ndarray | None = None
        self.task_penalty_: float | None = None
        if head.task_prior is None or head.calib_task is None or not folds:
            return
        proba = head.task_prior.task_proba(x).astype(np.float64)
        losses = np.zeros(len(self.task_penalties))
        for (tr, va), theta in folds:
            for i, penalty in enumerate(self.task_penalties):
                gamma = fit_offsets(d[tr] @ theta, proba[tr], y[tr], penalty)
                losses[i] += _log_loss(d[va] @ theta + offset_logit(proba[va], gamma), y[va]) * len(va)
        self.task_penalty_ = self.task_penalties[int(np.argmin(losses))]
        if np.isfinite(self.task_penalty_):
            self.task_offsets_ = fit_offsets(d @ self.theta_, proba, y, self.task_penalty_)

    def extend(self, head: QualityHead) -> QualityHead:
        """A copy of `head` with the new model as its last column; the others' arrays unchanged."""
        n_known = head.vectors.shape[0]
        heads = [head, *head.members]
        a = head.calib_a if head.calib_a is not None else np.ones(n_known)
        b = head.calib_b if head.calib_b is not None else np.zeros(n_known)
        w, beta = self.theta_[:n_known], float(self.theta_[-1])
        offset = n_known
        new_heads = []
        for h in heads:
            r = h.vectors.shape[1]
            delta = self.theta_[offset : offset + r]
            offset += r
            v_new = (w * a) @ h.vectors + delta
            # mean over members of (e_h . v_h + b_h) must equal sum_m w_m (a_m zbar_m + b_m) + ... + beta
            b_new = float((w * a) @ h.bias + w @ b + beta)
            new_heads.append(replace(h, vectors=np.vstack([h.vectors, v_new]).astype(np.float32),
                                     bias=np.append(h.bias, b_new).astype(np.float32), members=[]))
        top = new_heads[0]
        top.members = new_heads[1:]
        ones, zeros = np.float32(1.0), np.float32(0.0)
        if head.calib_a is not None and head.calib_b is not None:
            top.calib_a, top.calib_b = np.append(head.calib_a, ones), np.append(head.calib_b, zeros)
        if head.calib_knn is not None and head.knn_values is not None:
            top.calib_knn = np.append(head.calib_knn, zeros)  # no neighbours' outcomes for the new model
            top.knn_values = np.column_stack([head.knn_values, np.full(len(head.knn_values), self.prior_)]).astype(np.float32)
        if head.calib_task is not None and head.task_prior is not None:
            if self.task_offsets_ is not None:  # its own task term: logit(P(task | x) @ sigmoid(gamma))
                own_rates, own_weight = sigmoid(self.task_offsets_), ones
            else:
                own_rates, own_weight = np.full(len(head.task_prior.rates), self.prior_), zeros
            top.calib_task = np.append(head.calib_task, own_weight)
            rates = np.column_stack([head.task_prior.rates, own_rates])
            top.task_prior = replace(head.task_prior, rates=rates.astype(np.float32))
        if head.prior is not None:
            top.prior = np.append(head.prior, np.float32(self.prior_)).astype(np.float32)
        if top.calib_knn is not None or top.calib_task is not None:
            known_mix = head.stack_mix if head.stack_mix is not None else np.eye(n_known, dtype=np.float32)
            mix = np.zeros((n_known + 1, n_known + 1), dtype=np.float32)
            mix[:n_known, :n_known] = known_mix
            mix[:n_known, n_known] = known_mix @ w
            mix[n_known, n_known] = 1.0  # its own terms: the task offsets, if any (else calib 0)
            top.stack_mix = mix
        return top


def extend_length(length: LengthModel, x: np.ndarray, tokens: np.ndarray) -> LengthModel:
    """The length model with a row for the new model: ridge on the probes, alpha by CV."""
    xs = (x - length.mean) / length.scale
    target = np.log1p(tokens)
    coef = np.zeros(x.shape[1], dtype=np.float32)
    intercept, smear = float(target.mean()), 1.0
    if len(target) >= 5 and np.ptp(target) > 1e-9:
        from sklearn.linear_model import RidgeCV

        reg = RidgeCV(alphas=LENGTH_ALPHAS).fit(xs, target)
        coef, intercept = reg.coef_.astype(np.float32), float(reg.intercept_)
        smear = float(np.mean(np.exp(target - reg.predict(xs))))
    elif len(target):
        smear = float(np.mean(np.exp(target - intercept)))
    return LengthModel(length.mean, length.scale, np.vstack([length.coef, coef]).astype(np.float32),
                       np.append(length.intercept, intercept).astype(np.float32),
                       np.append(length.smear, smear).astype(np.float32))


def onboard(artifact: Path, model: str, rows: Sequence[OutcomeRow], price: Price, out: Path, seed: int = 0) -> dict[str, object]:
    """Write `out`: `artifact` plus `model`, fitted on `rows` (that model's outcomes) alone.

    `out` may be `artifact` itself: files are staged beside it and the manifest is replaced last,
    so a gateway polling the directory never loads a half-written artifact.
    """
    router = load_router(artifact)
    manifest = router.manifest
    if model in manifest.models:
        raise ValueError(f"{model!r} is already in the artifact ({artifact}); onboarding adds a new model")
    own = [r for r in rows if r.model == model]
    if not own:
        raise ValueError(f"no outcome rows for {model!r}")
    by_prompt: dict[str, OutcomeRow] = {}
    for r in own:
        by_prompt.setdefault(prompt_key(r.prompt), r)
    kept = list(by_prompt.values())
    x = router.featurizer.transform([r.prompt for r in kept])
    y = np.array([r.score for r in kept], dtype=np.float64)
    fit = NewModelFit(seed=seed).fit(router.quality, x, y)
    quality = fit.extend(router.quality)
    with_tokens = [i for i, r in enumerate(kept) if r.completion_tokens is not None]
    tokens = np.array([kept[i].completion_tokens for i in with_tokens], dtype=np.float64)
    length = extend_length(router.length, x[with_tokens], tokens)

    staging = Path(out).parent / f".{Path(out).name}.onboard-{uuid.uuid4().hex[:6]}"
    shutil.copytree(artifact, staging)
    quality.save(staging / manifest.quality["file"])
    length.save(staging / manifest.length["file"])
    probe_keys = set()
    if (Path(artifact) / PROBES_FILE).exists():
        from router.lab.probes import read_probes

        probe_keys = {prompt_key(p.prompt) for p in read_probes(artifact)}
    info = {**fit.report_, "on_probes": sum(prompt_key(r.prompt) in probe_keys for r in kept),
            "from_version": manifest.version, "at": datetime.now(UTC).isoformat(),
            "shrink_toward_prior": quality.shrink}
    version = f"{datetime.now(UTC):%Y%m%d%H%M%S}-onboard-{uuid.uuid4().hex[:4]}"
    new_manifest = manifest.model_copy(update={
        "version": version, "created_at": datetime.now(UTC).isoformat(), "models": [*manifest.models, model],
        "prices": {**manifest.prices, model: price}, "onboarded": {**manifest.onboarded, model: info},
        "length": {**manifest.length, "per_model": {**manifest.length.get("per_model", {}),
                                                    model: {"from_probes": len(tokens)}}},
    })
    write_manifest(staging, new_manifest)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for item in sorted(staging.iterdir()):
        if item.name == MANIFEST:
            continue
        if item.is_dir():
            shutil.copytree(item, out / item.name, dirs_exist_ok=True)
        else:  # each file swapped in whole; the appended columns leave the known models' predictions as they were
            shutil.copy2(item, out / f".{item.name}.tmp")
            (out / f".{item.name}.tmp").replace(out / item.name)
    (staging / MANIFEST).replace(out / MANIFEST)  # last, atomically: the new version is complete
    shutil.rmtree(staging, ignore_errors=True)
    read_manifest(out)
    return {"artifact": str(out), "version": version, "model": model, **info}


__all__ = ["NewModelFit", "extend_length", "onboard"]
