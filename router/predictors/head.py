"""The fitted quality model, as plain arrays evaluated with numpy.

Every candidate estimator (per-model logistic, shared factor model) is stored
in one form: standardize -> optional dense layers -> per-model vector dot
product -> per-model Platt calibration. Keeping inference in numpy makes a
decision a few small matrix products, and the artifact loads with
`np.load(allow_pickle=False)`: no code from the artifact is ever executed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from router.features.task_prior import TaskPrior


def _gelu(x: np.ndarray) -> np.ndarray:
    # tanh approximation, the same one used in training (torch approximate="tanh")
    return 0.5 * x * (1.0 + np.tanh(0.7978845608028654 * (x + 0.044715 * x**3)))


# Cosine similarity above which a stored key is the query itself (keys are kept as float16).
SELF_SIMILARITY = 0.9995


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -40.0, 40.0)))


def knn_logit(queries: np.ndarray, keys: np.ndarray, values: np.ndarray, k: int, exclude_self: bool = False) -> np.ndarray:
    """Logit of the smoothed mean outcome of the k nearest keys (cosine), per model.

    One pseudo-outcome at the global mean keeps the logit finite when all
    neighbours agree. `exclude_self` skips keys identical to the query, so a training
    prompt is described the way an unseen prompt would be (without its own outcomes).
    """
    q = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    sims = q @ keys.T
    if exclude_self:
        cosine = sims / np.maximum(np.linalg.norm(keys, axis=1), 1e-12)
        sims = np.where(cosine > SELF_SIMILARITY, -np.inf, sims)
    k = min(k, keys.shape[0])
    idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    prior = values.mean(axis=0)
    p = (values[idx].sum(axis=1) + prior) / (k + 1.0)
    p = np.clip(p, 1e-3, 1 - 1e-3)
    return np.log(p / (1.0 - p))


@dataclass
class QualityHead:
    """P(success) for each model: sigmoid(a_m * (phi(x) . v_m + b_m) + c_m)."""

    mean: np.ndarray  # (d,)
    scale: np.ndarray  # (d,)
    vectors: np.ndarray  # (m, r): one vector per LLM
    bias: np.ndarray  # (m,)
    layers: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # GELU between layers
    calib_a: np.ndarray | None = None  # (m,)
    calib_b: np.ndarray | None = None  # (m,)
    # Optional kNN stacking: the calibrator also sees the logit of the mean
    # outcome of the k most similar training prompts (cosine on the embedding
    # part of the features, which both embedders L2-normalize).
    knn_keys: np.ndarray | None = None  # (n_train, e)
    knn_values: np.ndarray | None = None  # (n_train, m)
    knn_k: int = 0
    calib_knn: np.ndarray | None = None  # (m,)
    # Optional task-prior stacking: the calibrator also sees the logit of the
    # expected success rate under the predicted task (router.features.task_prior).
    task_prior: TaskPrior | None = None
    calib_task: np.ndarray | None = None  # (m,)
    # Ensemble members (uncalibrated); the logit is the mean over self + members.
    members: list[QualityHead] = field(default_factory=list)
    # Shrinkage toward each model's prior success rate, p = (1 - s) * p + s * prior_m, with s
    # chosen by cross-validation: with no usable signal in the prompt (s = 1) every prompt gets
    # the same prediction per model, so the cost-weight sweep visits the single models.
    prior: np.ndarray | None = None  # (m,)
    shrink: float = 0.0
    # A model onboarded after training has no kNN or task term of its own; it borrows the known
    # models' as a weighted sum: the stacked terms are S @ stack_mix, identity columns for the
    # models trained with the head (router.lab.onboard).
    stack_mix: np.ndarray | None = None  # (m, m)

    def knn_logit(self, features: np.ndarray, exclude_self: bool = False) -> np.ndarray:
        assert self.knn_keys is not None and self.knn_values is not None
        return knn_logit(features[:, : self.knn_keys.shape[1]], self.knn_keys, self.knn_values, self.knn_k, exclude_self)

    def stacked_terms(self, features: np.ndarray, exclude_self: bool = False) -> np.ndarray | None:
        """(n, m) what the calibrator adds to the scaled logit: kNN and task-prior terms, or None."""
        terms = None
        if self.calib_knn is not None and self.knn_k > 0:
            terms = self.calib_knn * self.knn_logit(features, exclude_self)
        if self.calib_task is not None and self.task_prior is not None:
            task = self.calib_task * self.task_prior.transform(features)
            terms = task if terms is None else terms + task
        if terms is not None and self.stack_mix is not None:
            terms = terms @ self.stack_mix
        return terms

    def calibrated_logits(self, features: np.ndarray, exclude_self: bool = False) -> np.ndarray:
        """The logit of P(success) before shrinkage toward the prior."""
        z = self.logits(features)
        if self.calib_a is not None and self.calib_b is not None:
            z = self.calib_a * z + self.calib_b
            terms = self.stacked_terms(features, exclude_self)
            if terms is not None:
                z = z + terms
        return z

    def embed(self, features: np.ndarray) -> np.ndarray:
        h = (features - self.mean) / self.scale
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = _gelu(h)
        return h

    def logits(self, features: np.ndarray) -> np.ndarray:
        z = self.embed(features) @ self.vectors.T + self.bias
        if not self.members:
            return z
        return (z + sum(m.logits(features) for m in self.members)) / (1 + len(self.members))

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        p = sigmoid(self.calibrated_logits(features))
        if self.prior is not None and self.shrink > 0:
            p = (1.0 - self.shrink) * p + self.shrink * self.prior
        return p

    def save(self, path: Path) -> None:
        np.savez(path, **self._arrays())

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {
            "mean": self.mean, "scale": self.scale, "vectors": self.vectors, "bias": self.bias,
            "n_layers": np.array(len(self.layers)),
        }
        for i, (w, b) in enumerate(self.layers):
            arrays[f"layer{i}_w"], arrays[f"layer{i}_b"] = w, b
        if self.calib_a is not None and self.calib_b is not None:
            arrays["calib_a"], arrays["calib_b"] = self.calib_a, self.calib_b
        if self.calib_knn is not None and self.knn_keys is not None and self.knn_values is not None:
            arrays["calib_knn"], arrays["knn_k"] = self.calib_knn, np.array(self.knn_k)
            arrays["knn_keys"], arrays["knn_values"] = self.knn_keys.astype(np.float16), self.knn_values.astype(np.float32)
        if self.calib_task is not None and self.task_prior is not None:
            arrays["calib_task"] = self.calib_task
            arrays.update({f"task/{k}": v for k, v in self.task_prior.arrays().items()})
        if self.prior is not None:
            arrays["prior"], arrays["shrink"] = self.prior, np.array(self.shrink)
        if self.stack_mix is not None:
            arrays["stack_mix"] = self.stack_mix
        arrays["n_members"] = np.array(len(self.members))
        for i, member in enumerate(self.members):
            for key, value in member._arrays().items():
                arrays[f"member{i}/{key}"] = value
        return arrays

    @classmethod
    def load(cls, path: Path) -> QualityHead:
        with np.load(path, allow_pickle=False) as data:
            return cls._from_arrays({k: data[k] for k in data.files})

    @classmethod
    def _from_arrays(cls, d: dict[str, np.ndarray]) -> QualityHead:
        members = []
        for i in range(int(d.get("n_members", np.array(0)))):
            prefix = f"member{i}/"
            members.append(cls._from_arrays({k[len(prefix):]: v for k, v in d.items() if k.startswith(prefix)}))
        layers = [(d[f"layer{i}_w"], d[f"layer{i}_b"]) for i in range(int(d["n_layers"]))]
        return cls(
            mean=d["mean"], scale=d["scale"], vectors=d["vectors"], bias=d["bias"], layers=layers,
            calib_a=d["calib_a"] if "calib_a" in d else None,
            calib_b=d["calib_b"] if "calib_b" in d else None,
            knn_keys=d["knn_keys"].astype(np.float32) if "knn_keys" in d else None,
            knn_values=d["knn_values"] if "knn_values" in d else None,
            knn_k=int(d["knn_k"]) if "knn_k" in d else 0,
            calib_knn=d["calib_knn"] if "calib_knn" in d else None,
            task_prior=TaskPrior.from_arrays({k[5:]: v for k, v in d.items() if k.startswith("task/")})
            if "calib_task" in d else None,
            calib_task=d["calib_task"] if "calib_task" in d else None,
            members=members,
            prior=d["prior"] if "prior" in d else None,
            shrink=float(d["shrink"]) if "shrink" in d else 0.0,
            stack_mix=d["stack_mix"] if "stack_mix" in d else None,
        )
