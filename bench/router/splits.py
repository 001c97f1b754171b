"""The router bench's seeded train/test splits, and the strong/weak scoring shared by its scripts.

Every router bench script (and the archived probes) reads the same split per (dataset, seed), so
their numbers are comparable: the split is imported once into ~/.cache/ttc-router/bench and reused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.paths import DATA
from router.features.cache import default_cache_dir
from router.lab import metrics
from router.lab.importers import read_prices, run_import
from router.lab.matrix import OutcomeMatrix, build_matrix
from router.lab.outcomes import read_outcomes

DATASETS = {  # source -> held-out fraction (eval_all's --held-out overrides it for one run)
    "routellm-gsm8k": 0.5,
    "routellm-mmlu": 0.5,
    "llmrouter": 0.3,
    "routerarena": 0.5,
}
# Regularization grid of the probes' and the cascade's logistic regressions.
C_GRID = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)


def ensure_split(source: str, seed: int, work: Path) -> Path:
    """The folder holding `source`'s seeded train/test split (imported on first use)."""
    split = work / source / f"seed{seed}"
    if not (split / "test.jsonl").exists():
        run_import(source, DATA, split, test_fraction=DATASETS[source], seed=seed)
    return split


def split(source: str, seed: int) -> tuple[OutcomeMatrix, OutcomeMatrix]:
    """The (train, test) outcome matrices of `source`'s split `seed`, test in the training model order."""
    where = ensure_split(source, seed, default_cache_dir() / "bench")
    prices = read_prices(where / "prices.json")
    train = build_matrix(read_outcomes(where / "train.jsonl"), prices=prices)
    return train, build_matrix(read_outcomes(where / "test.jsonl"), train.models, prices)


def strong_weak(m: OutcomeMatrix) -> tuple[int, int]:
    strong = int(np.argmax(np.nanmean(m.cost, axis=0)))  # RouteLLM: the dearer model is the strong one
    return strong, 1 - strong


def pgr_point(score: np.ndarray, m: OutcomeMatrix) -> tuple[float, float | None]:
    """APGR and CPT(50%) of routing to the strong model in the order of `score`."""
    s, w = strong_weak(m)
    frac, pgr = metrics.pgr_curve(score, m.score[:, w], m.score[:, s])
    return metrics.apgr(frac, pgr), metrics.cpt(frac, pgr, 0.5)
