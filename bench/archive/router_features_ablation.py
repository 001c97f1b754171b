"""Feature/estimator ablation for the router's quality predictor, on the `static` featurizer.

    python -m bench.archive.router_features_ablation --datasets routellm-gsm8k --seeds 0 1 2 3 4 \
        --variants base task aux --candidates logistic

Every variant is trained on the same split's training prompts only and routed
on its held-out prompts with the same rule and the same cost estimate (prompt
tokens x price + mean training completion tokens x price), next to kNN and
logistic baselines on the same static embedding. Results go to
~/.cache/ttc-router/bench/ablation/ (one JSON per dataset/seed/variant) and a
markdown summary is printed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from contracts.environment import apply_environment_defaults
from bench.paths import DATA
from router.features import PromptFeaturizer
from router.features.aux import AUX_SOURCES, aux_key, drop_excluded, fit_aux
from router.features.cache import default_cache_dir
from router.features.static import StaticEmbedder
from router.features.task_prior import fit_task_prior, out_of_fold, usable_tasks
from router.lab.baselines import fit_knn, fit_logistic
from router.lab.evaluate import _Context
from router.lab.importers import read_prices, run_import
from router.lab.matrix import build_matrix
from router.lab.outcomes import read_outcomes
from router.lab.selection import select_and_fit
from router.lab.train import expected_cost
from router.predictors.quality import (
    PerModelLogistic,
    SharedFactorModel,
)

HELD_OUT = {"routellm-gsm8k": 0.5, "routellm-mmlu": 0.5, "llmrouter": 0.3, "routerarena": 0.5}
KEYS = ("aiq", "apgr", "cpt50", "match_best_cost_fraction")


def candidates(kind: str) -> list:  # type: ignore[type-arg]
    cands: list = [PerModelLogistic(c=0.003), PerModelLogistic(c=0.01)]  # type: ignore[type-arg]
    if kind == "shared":
        cands.append(SharedFactorModel(rank=16, hidden=64, weight_decay=1e-1, dropout=0.3))
    return cands


def run(source: str, seed: int, variants: list[str], cand_kind: str, work: Path, folds: int) -> dict[str, dict]:  # type: ignore[type-arg]
    split = work / source / f"seed{seed}"
    if not (split / "test.jsonl").exists():
        run_import(source, DATA, split, test_fraction=HELD_OUT[source], seed=seed)
    prices = read_prices(split / "prices.json")
    train = build_matrix(read_outcomes(split / "train.jsonl"), prices=prices)
    test = build_matrix(read_outcomes(split / "test.jsonl"), train.models, prices)
    feat = PromptFeaturizer(StaticEmbedder.distilled(), text_features=True).fit(train.prompts)
    x_tr, x_te = feat.transform(train.prompts), feat.transform(test.prompts)
    dim = feat.embedding_dim
    ctx = _Context(test)
    mean_tokens = np.array([train.completion_tokens[train.mask[:, j], j].mean() for j in range(len(train.models))])
    cost = expected_cost(test.prompt_tokens, np.tile(mean_tokens, (len(test.prompts), 1)), test.models, prices)
    scale = float(np.nanmax(np.nanmean(np.where(train.mask, train.cost, np.nan), axis=0)))
    out: dict[str, dict] = {}  # type: ignore[type-arg]

    def record(name: str, quality: np.ndarray, extra: dict | None = None) -> None:  # type: ignore[type-arg]
        m, _ = ctx.sweep(quality, cost, scale)
        out[name] = {**m.model_dump(), **(extra or {})}
        print(f"  {source} s{seed} {name:>14}: AIQ {m.aiq:.4f} APGR {m.apgr} CPT50 {m.cpt50} "
              f"match {m.match_best_cost_fraction}", flush=True)

    emb_tr, emb_te = x_tr[:, :dim], x_te[:, :dim]
    knn, k = fit_knn(emb_tr, train.score, train.mask, seed=seed)
    record("knn", knn.predict(emb_te), {"k": k})
    logit, c = fit_logistic(emb_tr, train.score, train.mask, seed=seed)
    record("logistic", logit.predict(emb_te), {"c": c})

    from sklearn.model_selection import KFold

    splits = list(KFold(folds, shuffle=True, random_state=seed).split(x_tr))
    extra_tr: dict[str, np.ndarray] = {}
    extra_te: dict[str, np.ndarray] = {}
    if len(usable_tasks(train.tasks)) >= 2:
        t0 = time.time()
        extra_tr["task"] = out_of_fold(x_tr, train.tasks, train.score, train.mask, splits)
        prior = fit_task_prior(x_tr, train.tasks, train.score, train.mask)
        extra_te["task"] = prior.transform(x_te)
        names = {t: i for i, t in enumerate(prior.tasks)}
        known = [i for i, t in enumerate(test.tasks) if t in names]
        acc = float(np.mean(prior.task_proba(x_te[known]).argmax(1) == np.array([names[test.tasks[i]] for i in known])))
        print(f"  task prior: {len(prior.tasks)} tasks, held-out task accuracy {acc:.3f} ({time.time() - t0:.0f}s)")
    if source == "routellm-gsm8k":
        loader, target_names = AUX_SOURCES["gsm8k-steps"]
        questions, targets = loader(DATA)
        test_keys = {aux_key(p) for p in test.prompts}
        keep = drop_excluded(questions, test_keys)
        print(f"  aux gsm8k-steps: {len(questions)} questions, {int((~keep).sum())} dropped as test duplicates")
        x_aux = feat.transform([q for q, ok in zip(questions, keep, strict=True) if ok])
        reg, info = fit_aux("gsm8k-steps", target_names, x_aux, targets[keep])
        extra_tr["aux"], extra_te["aux"] = reg.transform(x_tr), reg.transform(x_te)
        print(f"  aux ridge {info}")

    for variant in variants:
        parts = [p for p in variant.split("+") if p != "base"]
        if any(p not in extra_tr for p in parts):
            continue
        xa_tr = np.hstack([x_tr, *[extra_tr[p] for p in parts]]).astype(np.float32)
        xa_te = np.hstack([x_te, *[extra_te[p] for p in parts]]).astype(np.float32)
        t0 = time.time()
        sel = select_and_fit(xa_tr, train.score, train.mask, candidates(cand_kind), folds=folds, seed=seed, embedding_dim=dim)
        record(variant, sel.head.predict_proba(xa_te),
               {"selected": sel.cv["selected"].get("kind"), "knn_stack": sel.cv["knn_stack"].get("used"),
                "cv_brier": sel.cv["calibrated_brier"], "fit_s": time.time() - t0})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["routellm-gsm8k"], choices=list(HELD_OUT))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--variants", nargs="+", default=["base", "task", "aux"])
    parser.add_argument("--candidates", default="logistic", choices=["logistic", "shared"])
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    work = default_cache_dir() / "bench"
    store = work / "ablation"
    store.mkdir(parents=True, exist_ok=True)
    for source in args.datasets:
        agg: dict[str, dict[str, list]] = {}  # type: ignore[type-arg]
        for seed in args.seeds:
            path = store / f"{source}-s{seed}-{args.candidates}{args.tag}.json"
            res = json.loads(path.read_text()) if path.exists() else {}
            todo = [v for v in args.variants if v not in res]
            if todo or not res:
                res.update(run(source, seed, todo, args.candidates, work, args.folds))
                path.write_text(json.dumps(res, indent=1))
            for name, vals in res.items():
                for key in KEYS:
                    agg.setdefault(name, {}).setdefault(key, []).append(vals.get(key))
        print(f"\n### {source} ({len(args.seeds)} seeds, candidates {args.candidates})\n")
        print("| method | " + " | ".join(KEYS) + " |\n" + "|---" * (len(KEYS) + 1) + "|")
        for name, cols in agg.items():
            cells = []
            for key in KEYS:
                vals = [v for v in cols[key] if v is not None]
                cells.append(f"{np.mean(vals):.3f} ± {np.std(vals):.3f}" + (f" ({len(cols[key]) - len(vals)} n/a)" if len(vals) < len(cols[key]) else "") if vals else "n/a")
            print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    apply_environment_defaults()
    main()
