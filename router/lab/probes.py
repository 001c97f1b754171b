"""The probe set: K training prompts, chosen at training time, on which a new model is onboarded.

A new model is onboarded by answering only these prompts (Model-SAT's "aptitude test"): its
vector in the factor model is fitted on them with everything else frozen (`router.lab.onboard`).
Onboarding fits a linear head on the probes' design features (the known models' Platt-scaled
logits and the factor model's prompt vector, `design_features`), so the probes should cover that
space the way the prompts do: the design is split into K k-means clusters (strata) and each
gives its most central prompt. Prompts whose known-model logits differ land in different
clusters, so the strata also spread over the ways models disagree; leverage enters through the
design, which is the space the new head is fitted in.

Measured on LLMRouter (bench/router/onboarding.py; bench/results/router/onboarding-llmrouter.md,
9 held-out models x 5 seeds): at K = 100 the strata beat K random prompts by +0.0019 AIQ, an
interval of [-0.0012, +0.0053]: no better beyond noise (on MMLU, +0.019 [+0.004, +0.037]). The choice is also fragile: the float16
rounding of the stored kNN keys moves single models' results by up to 0.02. Two alternatives did
worse in a one-seed trial on two held-out models: a greedy D-optimal choice (highest leverage
first; AIQ 0.597 vs 0.636 for random at K = 25) picks the extremes, from which the new model's
bias is learned badly; weighting the strata's pick by the known models' outcome disagreement
(`spread_weight`) did not help, so it is off by default.

The probes are stored in the artifact (`probes.jsonl`, prompts with their reference answers
and grader names where known) so a user can run them: `ttc router probes`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from router.lab.collect import LabeledPrompt, load_labeled_prompts
from router.lab.matrix import OutcomeMatrix
from router.lab.outcomes import prompt_key
from router.predictors.head import QualityHead

PROBES_FILE = "probes.jsonl"
DEFAULT_PROBES = 100


class Probe(BaseModel):
    prompt: str = Field(min_length=1)
    id: str | None = None
    task: str | None = None
    answer: str | None = None  # reference answer, when the training data came with one
    grader: str | None = None  # router.lab.graders name for `answer`


def design_features(head: QualityHead, x: np.ndarray) -> np.ndarray:
    """What onboarding fits a new model's head on: the known models' calibrated logits (kNN and
    task-prior terms included) and every ensemble member's prompt-tower output (see
    `router.lab.onboard`). The rows are training prompts, so their kNN terms leave the prompt's
    own outcomes out, as they would be for a prompt the head has never seen."""
    heads = [head, *head.members]
    parts = [head.calibrated_logits(x, exclude_self=True)] + [h.embed(x) / len(heads) for h in heads]
    return np.hstack(parts).astype(np.float64)


def outcome_spread(y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per prompt, the variance of outcomes across the models that answered it, scaled to [0, 1]."""
    n_seen = mask.sum(axis=1)
    mean = (y * mask).sum(axis=1) / np.maximum(n_seen, 1)
    var = (((y - mean[:, None]) ** 2) * mask).sum(axis=1) / np.maximum(n_seen, 1)
    return np.where(n_seen >= 2, var / 0.25, 0.0)


class ProbeSelector:
    """Deterministic choice of `k` rows; `fit` sets `selected_` (row indices, one per cluster).

    The design features are standardized and split into `k` k-means clusters; each cluster gives
    the member nearest its centre (distance in units of the cluster's mean distance), less
    `spread_weight` times the known models' disagreement on it.
    """

    def __init__(self, k: int = DEFAULT_PROBES, spread_weight: float = 0.0, seed: int = 0) -> None:
        self.k = k
        self.spread_weight = spread_weight
        self.seed = seed

    def fit(self, design: np.ndarray, y: np.ndarray, mask: np.ndarray, eligible: np.ndarray | None = None) -> ProbeSelector:
        from sklearn.cluster import KMeans

        ok = np.flatnonzero(np.ones(len(design), dtype=bool) if eligible is None else eligible.astype(bool))
        scale = design[ok].std(axis=0)
        z = (design[ok] - design[ok].mean(axis=0)) / np.where(scale > 1e-9, scale, 1.0)
        k = min(self.k, len(np.unique(z.round(6), axis=0)))
        if k == 0:
            self.selected_ = np.zeros(0, dtype=int)
            self.report_ = {"k": 0, "spread_weight": self.spread_weight}
            return self
        km = KMeans(n_clusters=k, n_init=1, random_state=self.seed).fit(z)
        dist = np.linalg.norm(z - km.cluster_centers_[km.labels_], axis=1)
        spread = outcome_spread(y, mask)[ok]
        picks = []
        for c in range(k):
            members = np.flatnonzero(km.labels_ == c)
            if not len(members):
                continue
            near = dist[members] / (dist[members].mean() + 1e-9)
            picks.append(int(ok[members[np.argmax(self.spread_weight * spread[members] - near)]]))  # first wins ties
        self.selected_ = np.array(picks, dtype=int)
        self.report_ = {"k": len(picks), "spread_weight": self.spread_weight,
                        "mean_spread": float(outcome_spread(y, mask)[self.selected_].mean())}
        return self


def load_references(path: Path | None, default_grader: str) -> dict[str, tuple[LabeledPrompt, str]]:
    """Reference answers by prompt identity, from a labeled-prompts JSONL (collect's format)."""
    if path is None:
        return {}
    out: dict[str, tuple[LabeledPrompt, str]] = {}
    graders = _graders_by_line(path)
    for item, grader in zip(load_labeled_prompts(path), graders, strict=True):
        out[prompt_key(item.prompt)] = (item, grader or default_grader)
    return out


def _graders_by_line(path: Path) -> list[str | None]:
    found: list[str | None] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            value = json.loads(line).get("grader")
            found.append(str(value) if value else None)
    return found


def choose_probes(head: QualityHead, x: np.ndarray, y: np.ndarray, mask: np.ndarray, prompts: Sequence[str],
                  tasks: Sequence[str | None], k: int, references: dict[str, tuple[LabeledPrompt, str]],
                  seed: int = 0) -> tuple[list[Probe], dict[str, object]]:
    """The probe set for a trained head; with references, only prompts that have one qualify."""
    keys = [prompt_key(p) for p in prompts]
    eligible = np.array([key in references for key in keys]) if references else None
    selector = ProbeSelector(k=k, seed=seed).fit(design_features(head, x), y, mask, eligible)
    probes = []
    for i in selector.selected_:
        item, grader = references.get(keys[i], (None, None))
        probes.append(Probe(prompt=prompts[i], task=tasks[i], id=item.id if item else None,
                            answer=item.answer if item else None, grader=grader))
    report = {"file": PROBES_FILE, "n": len(probes), "with_answers": sum(p.answer is not None for p in probes),
              "method": "k-means strata on the onboarding design, the member nearest each centre", **selector.report_}
    return probes, report


def write_probes(path: Path, probes: Sequence[Probe]) -> None:
    with Path(path).open("w", encoding="utf-8") as handle:
        for probe in probes:
            handle.write(probe.model_dump_json(exclude_none=True) + "\n")


def read_probes(artifact: Path) -> list[Probe]:
    path = Path(artifact) / PROBES_FILE
    if not path.exists():
        raise FileNotFoundError(f"{artifact} has no probe set ({PROBES_FILE}): retrain with `ttc router train --probes K`")
    return [Probe.model_validate_json(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def build_probe_set(out_dir: Path, head: QualityHead, x: np.ndarray, matrix: OutcomeMatrix, k: int,
                    references: Path | None = None, grader: str = "numeric", seed: int = 0) -> dict[str, object] | None:
    """Choose `k` probes among the training prompts and write them into the artifact directory."""
    if k <= 0:
        return None
    refs = load_references(references, grader)
    probes, report = choose_probes(head, x, matrix.score, matrix.mask, matrix.prompts, matrix.tasks, k, refs, seed)
    write_probes(Path(out_dir) / PROBES_FILE, probes)
    return report
