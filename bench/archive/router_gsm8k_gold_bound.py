"""Diagnostic, not a router: how far could *perfect* GSM8K difficulty features take routing?

    python -m bench.archive.router_gsm8k_gold_bound

For each RouteLLM GSM8K split (seeds 0-4, from bench/router/eval_all.py), a
logistic regression per model is trained on the text statistics plus the
properties of each prompt's *gold* worked solution from gsm8k/test.jsonl
(calculator steps, lines, length, answer size). No router may see these (they
come from the test prompts' answers); an auxiliary regressor can at best
predict them, so this bounds what idea "predict the number of reasoning steps"
can reach. Prints APGR and CPT(50%) per seed and the mean.
"""

from __future__ import annotations

import json

import numpy as np

from contracts.environment import apply_environment_defaults
from bench.paths import DATA
from bench.router.splits import ensure_split
from router.features.aux import aux_key, gsm8k_solution_targets
from router.features.cache import default_cache_dir
from router.features.text import TextFeatures
from router.lab import metrics
from router.lab.importers import read_prices
from router.lab.matrix import OutcomeMatrix, build_matrix
from router.lab.outcomes import read_outcomes

STRONG = "gpt-4-1106-preview"


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    with (DATA / "gsm8k" / "test.jsonl").open(encoding="utf-8") as handle:
        gold = {aux_key(r["question"]): gsm8k_solution_targets(r["answer"]) for r in map(json.loads, handle)}
    results = []
    for seed in range(5):
        split = ensure_split("routellm-gsm8k", seed, default_cache_dir() / "bench")
        prices = read_prices(split / "prices.json")
        train = build_matrix(read_outcomes(split / "train.jsonl"), prices=prices)
        test = build_matrix(read_outcomes(split / "test.jsonl"), train.models, prices)

        def features(m: OutcomeMatrix) -> np.ndarray:
            return np.hstack([TextFeatures().transform(m.prompts), np.array([gold[aux_key(p)] for p in m.prompts])])

        scaler = StandardScaler().fit(features(train))
        a, b = scaler.transform(features(train)), scaler.transform(features(test))
        s = train.models.index(STRONG)
        w = 1 - s
        q = np.column_stack([LogisticRegression(C=0.1, max_iter=1000).fit(a, train.score[:, j] >= 0.5).predict_proba(b)[:, 1]
                             for j in range(2)])
        frac, pgr = metrics.pgr_curve(q[:, s] - q[:, w], test.score[:, w], test.score[:, s])
        results.append((metrics.apgr(frac, pgr), metrics.cpt(frac, pgr, 0.5)))
        print(f"seed {seed}: APGR {results[-1][0]:.3f} CPT(50%) {results[-1][1]:.3f}")
    apgr = [r[0] for r in results]
    print(f"mean APGR {np.mean(apgr):.3f} ± {np.std(apgr):.3f}, CPT(50%) {np.mean([r[1] for r in results]):.3f}")


if __name__ == "__main__":
    apply_environment_defaults()
    main()
