"""Auxiliary difficulty regressors trained on worked solutions outside the outcome data.

A router's outcome set is small (RouteLLM GSM8K: ~650 training prompts), but
public data says more about *how hard* a prompt is: GSM8K's training split has
a worked solution for each of 7,473 problems. We fit a ridge regressor from the
router's own base features to properties of the solution (calculator steps,
lines, length, size of the answer) and give its predictions to the quality
predictor as extra features. At serving time that is one (d x k) product.

Leakage: an auxiliary example must never be a held-out test prompt. Examples
are keyed by `aux_key` (lowercase alphanumerics only, so formatting and
punctuation differences still match); `fit_aux` drops any example whose key is
excluded, and the artifact records every key used so that `ttc router eval`
refuses (exit 2) a test set that overlaps it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GSM8K_TARGETS: tuple[str, ...] = ("log_calcs", "log_lines", "log_solution_chars", "log_answer", "answer_fraction")
_WORDS = re.compile(r"[a-z0-9]+")
_CALC = re.compile(r"<<[^>]*>>")
RIDGE_ALPHAS = (1.0, 10.0, 100.0, 1000.0)


def aux_key(text: str) -> str:
    """Normalized identity for near-exact duplicate detection across datasets."""
    return hashlib.sha256(" ".join(_WORDS.findall(text.lower())).encode("utf-8")).hexdigest()


def gsm8k_solution_targets(answer: str) -> list[float]:
    """Difficulty proxies read from one worked GSM8K solution (`... #### 42`)."""
    body, _, final = answer.rpartition("####")
    lines = [ln for ln in body.strip().splitlines() if ln.strip()]
    try:
        value = abs(float(final.strip().replace(",", "")))
    except ValueError:
        value = 0.0
    return [
        math.log1p(len(_CALC.findall(body))),
        math.log1p(len(lines)),
        math.log1p(len(body)),
        math.log1p(min(value, 1e9)),
        float(value != int(value)) if value < 1e15 else 0.0,
    ]


def load_gsm8k_train(data_dir: Path) -> tuple[list[str], np.ndarray]:
    """Questions and solution targets from `gsm8k/train.jsonl` (never the test split)."""
    questions: list[str] = []
    targets: list[list[float]] = []
    with (Path(data_dir) / "gsm8k" / "train.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                rec = json.loads(line)
                questions.append(rec["question"])
                targets.append(gsm8k_solution_targets(rec["answer"]))
    return questions, np.array(targets, dtype=np.float64)


AUX_SOURCES = {"gsm8k-steps": (load_gsm8k_train, GSM8K_TARGETS)}


def load_gsm8k_questions(data_dir: Path) -> list[str]:
    return load_gsm8k_train(data_dir)[0]


# Unlabeled prompt corpora (text only) for fitting the `static-proj` map.
CORPORA = {"gsm8k-train": load_gsm8k_questions}


@dataclass
class AuxRegressor:
    """Ridge (standardized features) -> k standardized auxiliary targets."""

    name: str
    target_names: list[str]
    mean: np.ndarray  # (d,)
    scale: np.ndarray  # (d,)
    coef: np.ndarray  # (k, d)
    intercept: np.ndarray  # (k,)

    @property
    def dim(self) -> int:
        return int(self.coef.shape[0])

    def transform(self, features: np.ndarray) -> np.ndarray:
        return (((features - self.mean) / self.scale) @ self.coef.T + self.intercept).astype(np.float32)

    def save(self, path: Path) -> None:
        np.savez(path, name=np.array(self.name), target_names=np.array(self.target_names, dtype=str),
                 mean=self.mean, scale=self.scale, coef=self.coef, intercept=self.intercept)

    @classmethod
    def load(cls, path: Path) -> AuxRegressor:
        with np.load(path, allow_pickle=False) as d:
            return cls(str(d["name"]), [str(t) for t in d["target_names"]], d["mean"], d["scale"], d["coef"], d["intercept"])


def drop_excluded(texts: Sequence[str], exclude: Iterable[str]) -> np.ndarray:
    """Boolean mask of the auxiliary examples to keep (key not in `exclude`)."""
    banned = set(exclude)
    return np.array([aux_key(t) not in banned for t in texts], dtype=bool)


def fit_aux(name: str, target_names: Sequence[str], features: np.ndarray, targets: np.ndarray) -> tuple[AuxRegressor, dict[str, float]]:
    """Ridge with alpha by efficient LOO (RidgeCV); targets standardized so each feature is on one scale."""
    from sklearn.linear_model import RidgeCV

    mean = features.mean(axis=0).astype(np.float32)
    scale = features.std(axis=0).astype(np.float32)
    scale[scale < 1e-6] = 1.0
    t_mean, t_std = targets.mean(axis=0), targets.std(axis=0)
    t_std[t_std < 1e-9] = 1.0
    ridge = RidgeCV(alphas=RIDGE_ALPHAS).fit((features - mean) / scale, (targets - t_mean) / t_std)
    reg = AuxRegressor(name, list(target_names), mean, scale, ridge.coef_.astype(np.float32),
                       np.asarray(ridge.intercept_, dtype=np.float32))
    return reg, {"alpha": float(ridge.alpha_), "n": len(features)}
