"""Task-prior features: P(task | prompt) times each model's per-task success rate.

Outcome rows may carry a `task` label (MMLU subject, LLMRouter task name).
Which model is good differs far more between tasks than between prompts of
one task, and a plain embedding regressor dilutes that: on RouteLLM MMLU the
per-subject gain of GPT-4 over Mixtral alone ranks prompts as well as the
embedding router does (APGR ~0.67). At serving time only the prompt is known,
so we learn the task from the prompt (a multinomial logistic regression on the
base features) and feed, per model, the logit of the expected success rate
sum_t P(t | x) * rate[t, m] to the quality predictor.

Training features are out-of-fold: the quality predictor must see the task
prior as it will be at serving time (an imperfect classifier on an unseen
prompt), not its in-sample, overconfident fit. The classifier's inverse
regularization C is the one with the lowest out-of-fold task log-loss on the
same folds: the prior uses probabilities, and on LLMRouter C=1 was overconfident
(3-fold log-loss 0.48 vs 0.36 at C=0.1, same accuracy). The grid's lower end
(0.01, 0.003) underfits: on LLMRouter and MMLU the minimum is at 0.03.

Everything is plain arrays (`.npz`, no pickle): a decision costs one (d x T)
matrix product and a softmax.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Tasks with fewer labelled training prompts than this fold into no class:
# their prompts are left out of the classifier (a rate from 2 prompts is noise).
MIN_TASK_PROMPTS = 5
# Additive smoothing of per-task success rates toward the model's overall rate,
# in pseudo-prompts.
RATE_SMOOTHING = 5.0
CLASSIFIER_C = 1.0
CLASSIFIER_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-3, 1 - 1e-3)
    return np.log(p / (1 - p))


@dataclass
class TaskPrior:
    """Softmax task classifier (standardize -> linear) plus a (tasks x models) rate table."""

    tasks: list[str]
    mean: np.ndarray  # (d,)
    scale: np.ndarray  # (d,)
    coef: np.ndarray  # (T, d)
    intercept: np.ndarray  # (T,)
    rates: np.ndarray  # (T, m) smoothed success rate per task and model

    @property
    def dim(self) -> int:
        return int(self.rates.shape[1])

    def task_proba(self, features: np.ndarray) -> np.ndarray:
        z = ((features - self.mean) / self.scale) @ self.coef.T + self.intercept
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def transform(self, features: np.ndarray) -> np.ndarray:
        """(n, m) logit of the expected success rate of each model."""
        return _logit(self.task_proba(features) @ self.rates).astype(np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays (unicode task names, no objects), stored inside the quality head's .npz."""
        return {"tasks": np.array(self.tasks, dtype=str), "mean": self.mean, "scale": self.scale,
                "coef": self.coef, "intercept": self.intercept, "rates": self.rates}

    @classmethod
    def from_arrays(cls, d: dict[str, np.ndarray]) -> TaskPrior:
        return cls([str(t) for t in d["tasks"]], d["mean"], d["scale"], d["coef"], d["intercept"], d["rates"])


def usable_tasks(tasks: Sequence[str | None]) -> list[str]:
    """Task labels with enough prompts to learn from; fewer than 2 means no task prior."""
    counts = Counter(t for t in tasks if t)
    return sorted(t for t, c in counts.items() if c >= MIN_TASK_PROMPTS)


def fit_task_prior(
    features: np.ndarray, tasks: Sequence[str | None], score: np.ndarray, mask: np.ndarray, c: float = CLASSIFIER_C
) -> TaskPrior:
    from sklearn.linear_model import LogisticRegression

    names = usable_tasks(tasks)
    if len(names) < 2:
        raise ValueError("a task prior needs at least two tasks with enough labelled prompts")
    col = {t: i for i, t in enumerate(names)}
    rows = np.array([t in col for t in tasks])
    labels = np.array([col[t] for t in tasks if t in col])
    mean = features.mean(axis=0).astype(np.float32)
    scale = features.std(axis=0).astype(np.float32)
    scale[scale < 1e-6] = 1.0
    xs = (features[rows] - mean) / scale
    clf = LogisticRegression(C=c, max_iter=300).fit(xs, labels)
    # Overall rate per model, the shrinkage target for thin tasks.
    overall = (score * mask).sum(0) / np.maximum(mask.sum(0), 1)
    rates = np.zeros((len(names), score.shape[1]))
    for t, i in col.items():
        sel = np.array([x == t for x in tasks])
        hits = (score[sel] * mask[sel]).sum(0)
        seen = mask[sel].sum(0)
        rates[i] = (hits + RATE_SMOOTHING * overall) / (seen + RATE_SMOOTHING)
    # A binary problem gives sklearn a single row; expand to two softmax rows.
    coef, intercept = clf.coef_, clf.intercept_
    if len(names) == 2:
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    return TaskPrior(names, mean, scale, coef.astype(np.float32), intercept.astype(np.float32), rates.astype(np.float32))


def out_of_fold(
    features: np.ndarray,
    tasks: Sequence[str | None],
    score: np.ndarray,
    mask: np.ndarray,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    grid: Sequence[float] = (CLASSIFIER_C,),
) -> tuple[np.ndarray, float, dict[str, float]]:
    """Task-prior features for the training prompts, each from a prior fitted without its fold.

    With several classifier C values in `grid`, returns the features of the C
    with the lowest out-of-fold log-loss of the true task, that C, and the
    log-loss of each C."""
    best: tuple[float, np.ndarray, float] | None = None
    losses: dict[str, float] = {}
    for c in grid:
        out = np.zeros((len(features), score.shape[1]), dtype=np.float32)
        nll, seen = 0.0, 0
        for tr, va in splits:
            prior = fit_task_prior(features[tr], [tasks[i] for i in tr], score[tr], mask[tr], c=c)
            out[va] = prior.transform(features[va])
            col = {t: j for j, t in enumerate(prior.tasks)}
            rows = [k for k, i in enumerate(va) if tasks[i] in col]
            if rows:
                proba = prior.task_proba(features[va[rows]])
                truth = [col[tasks[va[k]]] for k in rows]  # type: ignore[index]
                nll -= float(np.log(np.clip(proba[np.arange(len(rows)), truth], 1e-12, None)).sum())
                seen += len(rows)
        losses[str(c)] = nll / max(seen, 1)
        if best is None or losses[str(c)] < best[0]:
            best = (losses[str(c)], out, float(c))
    assert best is not None
    return best[1], best[2], losses
