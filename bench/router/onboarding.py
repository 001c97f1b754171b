"""Onboarding a new model from K probes vs retraining the router with all of its outcomes.

    nice -n 10 python -m bench.router.onboarding                      # LLMRouter, seeds 0-4, K in 25 50 100 200
    nice -n 10 python -m bench.router.onboarding --seeds 0 1
    nice -n 10 python -m bench.router.onboarding --dataset routellm-gsm8k --ks 100

Leave one model out in turn. Per split seed (the bench's shared splits, bench/router/splits.py):

* **full retrain**: the router trained on every model's training outcomes (one per seed);
* **without** the held-out model: the router trained on the other models, then
  * **probes**: the held-out model onboarded from K probes chosen by `router.lab.probes`
    (its outcomes on those K training prompts only; everything else frozen, `router.lab.onboard`);
  * **random K**: the same head fit on K training prompts drawn at random.

Every router is scored by AIQ on the held-out test split with all models as candidates
(two-model sets: APGR too), next to random mixing and the best single model of the same split.

To fit 2 shared cores, every router here is the shared factor model alone (the candidate that
onboarding extends), calibrated with 3 folds and the train command's kNN/task stacking, on the
`static` featurizer computed once per split and cached; no candidate grid, no token bag. So the
numbers compare onboarding with retraining under one pipeline; they are not the tuned router's
numbers of RESULTS.md. Results: bench/results/router/onboarding-<dataset>.{json,md,png}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from bench.paths import REPO
from bench.router.splits import ensure_split, split
from contracts.environment import apply_environment_defaults
from contracts.prices import Price
from router.features import build_featurizer
from router.features.cache import default_cache_dir
from router.lab.evaluate import _Context
from router.lab.importers import read_prices
from router.lab.matrix import OutcomeMatrix
from router.lab.onboard import NewModelFit, extend_length
from router.lab.probes import ProbeSelector, design_features
from router.lab.selection import select_and_fit
from router.lab.train import expected_cost
from router.predictors.head import QualityHead
from router.predictors.length import LengthModel, fit_length_model
from router.predictors.quality import SharedFactorModel

RESULTS = REPO / "bench" / "results" / "router"


def cached_features(source: str, seed: int, train: OutcomeMatrix, test: OutcomeMatrix) -> tuple[np.ndarray, np.ndarray, int]:
    path = default_cache_dir() / "bench" / "onboarding" / f"{source}-seed{seed}-static.npz"
    if path.exists():
        with np.load(path) as d:
            return d["train"], d["test"], int(d["embedding_dim"])
    feat = build_featurizer("static")
    feat.fit(train.prompts)
    x_train, x_test = feat.transform(train.prompts), feat.transform(test.prompts)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, train=x_train, test=x_test, embedding_dim=np.array(feat.embedding_dim))
    return x_train, x_test, feat.embedding_dim


# Bump when fit_router's recipe changes: cached routers of another recipe are not reused.
ROUTER_RECIPE = "factor-r16-h64-wd0.1-do0.3-f3-v1"


def cached_router(source: str, seed: int, x: np.ndarray, m: OutcomeMatrix, cols: list[int], emb_dim: int) -> tuple[QualityHead, LengthModel, float]:
    """`fit_router`, kept on disk per (dataset, seed, models): onboarding changes do not retrain.
    Returns the router as saved (what a gateway and `ttc router onboard` load: the kNN keys are
    stored as float16, which moves the probe choice) and the seconds its fit took."""
    name = "+".join(m.models[c].replace("/", "_") for c in cols)
    digest = hashlib.sha256(f"{ROUTER_RECIPE}|{name}".encode()).hexdigest()[:16]
    base = default_cache_dir() / "bench" / "onboarding" / f"{source}-seed{seed}-{digest}"
    head_path, length_path, time_path = (Path(f"{base}-{part}") for part in ("head.npz", "length.npz", "fit_s.txt"))
    if head_path.exists() and length_path.exists() and time_path.exists():
        return QualityHead.load(head_path), LengthModel.load(length_path), float(time_path.read_text())
    t0 = time.perf_counter()
    head, length = fit_router(x, m, cols, emb_dim, seed)
    fit_s = time.perf_counter() - t0
    head.save(head_path)
    length.save(length_path)
    time_path.write_text(f"{fit_s:.1f}\n")
    return QualityHead.load(head_path), LengthModel.load(length_path), fit_s


def fit_router(x: np.ndarray, m: OutcomeMatrix, cols: list[int], emb_dim: int, seed: int) -> tuple[QualityHead, LengthModel]:
    tasks = m.tasks if sum(t is not None for t in m.tasks) else None
    selection = select_and_fit(x, m.score[:, cols], m.mask[:, cols],
                               [SharedFactorModel(rank=16, hidden=64, weight_decay=1e-1, dropout=0.3, seed=seed)],
                               folds=3, seed=seed, embedding_dim=emb_dim, tasks=tasks)
    length, _ = fit_length_model(x, m.completion_tokens[:, cols], m.mask[:, cols])
    return selection.head, length


class Scorer:
    """Routes the test split on predicted quality and cost; AIQ (and APGR for two models)."""

    def __init__(self, train: OutcomeMatrix, test: OutcomeMatrix, x_test: np.ndarray, prices: dict[str, Price]) -> None:
        self.test, self.x_test, self.ctx = test, x_test, _Context(test)
        self.scale = float(np.nanmax(np.nanmean(np.where(train.mask, train.cost, np.nan), axis=0)))
        self.prices = prices

    def score(self, head: QualityHead, length: LengthModel, order: list[int]) -> dict[str, float | None]:
        """`order[i]`: the test column of the head's i-th model."""
        q = np.zeros((len(self.x_test), len(order)))
        tok = np.zeros_like(q)
        q[:, order], tok[:, order] = head.predict_proba(self.x_test), length.predict(self.x_test)
        cost = expected_cost(self.test.prompt_tokens, tok, self.test.models, self.prices)
        result, _ = self.ctx.sweep(q, cost, self.scale)
        return {"aiq": result.aiq, "apgr": result.apgr}


def run_seed(source: str, seed: int, ks: list[int], log: list[str], held_out: list[str] | None = None) -> dict[str, object]:
    train, test = split(source, seed)
    x_train, x_test, emb_dim = cached_features(source, seed, train, test)
    prices = read_prices(ensure_split(source, seed, default_cache_dir() / "bench") / "prices.json")
    scorer = Scorer(train, test, x_test, prices)
    n_models = len(train.models)
    mixing = scorer.ctx.random_mix()[0]
    best = scorer.ctx.best
    out: dict[str, object] = {"seed": seed, "models": train.models, "n_train": len(train.prompts), "n_test": len(test.prompts),
                              "random_mix": {"aiq": mixing.aiq, "apgr": mixing.apgr},
                              "best_single": {"model": train.models[best], "quality": float(scorer.ctx.q_single[best])}}
    head, length, full_s = cached_router(source, seed, x_train, train, list(range(n_models)), emb_dim)
    out["full"] = scorer.score(head, length, list(range(n_models)))
    out["full_fit_s"] = round(full_s, 1)
    log.append(f"seed {seed} full retrain: {out['full']} ({out['full_fit_s']} s)")
    held: dict[str, object] = {}
    for h in range(n_models):
        if held_out and train.models[h] not in held_out:
            continue
        keep = [j for j in range(n_models) if j != h]
        head_loo, length_loo, fit_s = cached_router(source, seed, x_train, train, keep, emb_dim)
        design = design_features(head_loo, x_train)
        per_k: dict[str, object] = {}
        rng = np.random.default_rng(1000 * seed + h)
        for k in ks:
            t1 = time.perf_counter()
            probes = ProbeSelector(k=k, seed=seed).fit(design, train.score[:, keep], train.mask[:, keep]).selected_
            select_s = time.perf_counter() - t1
            row: dict[str, object] = {}
            for label, rows in (("probes", probes), ("random", rng.choice(len(train.prompts), size=k, replace=False))):
                t2 = time.perf_counter()
                fit = NewModelFit(seed=seed).fit(head_loo, x_train[rows], train.score[rows, h])
                extended = fit.extend(head_loo)
                ext_length = extend_length(length_loo, x_train[rows], train.completion_tokens[rows, h])
                onboard_s = time.perf_counter() - t2
                row[label] = {**scorer.score(extended, ext_length, [*keep, h]), "onboard_s": round(onboard_s, 3),
                              "penalty": fit.report_["penalty"]}
            row["select_s"] = round(select_s, 3)
            per_k[str(k)] = row
        held[train.models[h]] = {"retrain_without_s": round(fit_s, 1), "k": per_k}
        log.append(f"seed {seed} held out {train.models[h]}: " + ", ".join(
            f"K={k} probes {v['probes']['aiq']:.4f} random {v['random']['aiq']:.4f}" for k, v in per_k.items()))  # type: ignore[index]
        print(log[-1], flush=True)
    out["held_out"] = held
    return out


def summarize(source: str, runs: list[dict], ks: list[int], command: str) -> str:  # type: ignore[type-arg]
    def mean_over(key: str, k: int, metric: str) -> tuple[float, float]:
        vals = [r["held_out"][m]["k"][str(k)][key][metric] for r in runs for m in r["held_out"]]
        return float(np.mean(vals)), float(np.std(vals))

    metric = "apgr" if len(runs[0]["models"]) == 2 else "aiq"
    full = [r["full"][metric] for r in runs for _ in r["held_out"]]
    lines = [f"# Onboarding from probes vs full retrain: {source}", "",
             f"Command: `{command}`  ", f"Seeds: {[r['seed'] for r in runs]}; held-out models per seed: {len(runs[0]['held_out'])}; "
             f"train/test prompts (seed {runs[0]['seed']}): {runs[0]['n_train']}/{runs[0]['n_test']}. Featurizer: static (cached); "
             "router: shared factor model only, 3-fold calibration (see bench/router/onboarding.py).", "",
             f"Mean {metric.upper()} ± SD over (held-out model, seed); the full retrain's is the same router for every held-out "
             "model of a seed. Differences: mean [95% bootstrap interval over the (held-out model, seed) pairs].", "",
             "| K | probes | random K | full retrain | probes - full | probes - random |", "|---|---|---|---|---|---|"]
    f_mean = float(np.mean(full))

    def paired(key: str, k: int, against: str) -> str:
        """Mean difference over (held-out model, seed) pairs with a 95% bootstrap interval over the pairs."""
        a = np.array([r["held_out"][m]["k"][str(k)][key][metric] for r in runs for m in r["held_out"]])
        b = (np.array([r["full"][metric] for r in runs for _ in r["held_out"]]) if against == "full" else
             np.array([r["held_out"][m]["k"][str(k)][against][metric] for r in runs for m in r["held_out"]]))
        d = a - b
        draws = np.random.default_rng(0).integers(0, len(d), (5000, len(d)))
        low, high = np.percentile(d[draws].mean(axis=1), [2.5, 97.5])
        return f"{d.mean():+.4f} [{low:+.4f}, {high:+.4f}]"

    for k in ks:
        p, ps = mean_over("probes", k, metric)
        r, rs = mean_over("random", k, metric)
        lines.append(f"| {k} | {p:.4f} ± {ps:.4f} | {r:.4f} ± {rs:.4f} | {f_mean:.4f} | {paired('probes', k, 'full')} | "
                     f"{paired('probes', k, 'random')} |")
    mix = [r["random_mix"][metric] for r in runs]
    lines += ["", f"Random mixing {metric.upper()}: {np.mean(mix):.4f}; best single model quality: "
              + ", ".join(f"seed {r['seed']} {r['best_single']['model']} {r['best_single']['quality']:.4f}" for r in runs), ""]
    lines += ["Per held-out model (mean over seeds), K = " + str(max(k for k in ks if k <= 100) if any(k <= 100 for k in ks) else ks[0]) + ":", "",
              "| held-out model | probes | random K | full retrain |", "|---|---|---|---|"]
    k_ref = max(k for k in ks if k <= 100) if any(k <= 100 for k in ks) else ks[0]
    for m in runs[0]["held_out"]:
        p = np.mean([r["held_out"][m]["k"][str(k_ref)]["probes"][metric] for r in runs])
        q = np.mean([r["held_out"][m]["k"][str(k_ref)]["random"][metric] for r in runs])
        lines.append(f"| {m} | {p:.4f} | {q:.4f} | {np.mean([r['full'][metric] for r in runs]):.4f} |")
    fit_s = [r["held_out"][m]["retrain_without_s"] for r in runs for m in r["held_out"]]
    onboard_s = [r["held_out"][m]["k"][str(k_ref)]["probes"]["onboard_s"] for r in runs for m in r["held_out"]]
    lines += ["", f"Time (this machine, 2 shared cores, niced): a retrain {np.mean(fit_s):.0f} s; onboarding one model at K={k_ref} "
              f"{np.mean(onboard_s):.2f} s (head fit with its CV, features given).", ""]
    return "\n".join(lines)


def plot(source: str, runs: list[dict], ks: list[int], path: Path) -> None:  # type: ignore[type-arg]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = "apgr" if len(runs[0]["models"]) == 2 else "aiq"
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("probes", "onboard from chosen probes"), ("random", "onboard from random K")):
        means = [np.mean([r["held_out"][m]["k"][str(k)][key][metric] for r in runs for m in r["held_out"]]) for k in ks]
        ax.plot(ks, means, marker="o", label=label)
    ax.axhline(np.mean([r["full"][metric] for r in runs]), color="k", ls="--", label="full retrain")
    ax.axhline(np.mean([r["random_mix"][metric] for r in runs]), color="grey", ls=":", label="random mixing")
    ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # the K ticks only
    ax.set_xlabel("K (outcomes of the new model)")
    ax.set_ylabel(f"held-out {metric.upper()}")
    ax.set_title(f"{source}: leave one model out, seeds {[r['seed'] for r in runs]}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    apply_environment_defaults()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="llmrouter")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--ks", type=int, nargs="+", default=[25, 50, 100, 200])
    parser.add_argument("--held-out", nargs="+", default=None, help="only these models in turn (default: every model)")
    parser.add_argument("--name", default=None, help="results file stem (default: onboarding-<dataset>)")
    args = parser.parse_args()
    command = "nice -n 10 python -m bench.router.onboarding " + " ".join(
        [f"--dataset {args.dataset}", "--seeds " + " ".join(map(str, args.seeds)), "--ks " + " ".join(map(str, args.ks))]
        + ([f"--held-out {' '.join(args.held_out)}"] if args.held_out else []) + ([f"--name {args.name}"] if args.name else []))
    RESULTS.mkdir(parents=True, exist_ok=True)
    runs, log = [], []
    stem = RESULTS / (args.name or f"onboarding-{args.dataset}")
    for seed in args.seeds:
        runs.append(run_seed(args.dataset, seed, args.ks, log, args.held_out))
        # Written after every seed, so a run cut short still leaves what it finished.
        Path(f"{stem}.json").write_text(json.dumps({"command": command, "runs": runs}, indent=1, default=float) + "\n")
        Path(f"{stem}.md").write_text(summarize(args.dataset, runs, args.ks, command) + "\n")
        plot(args.dataset, runs, args.ks, Path(f"{stem}.png"))
    print(Path(f"{stem}.md").read_text())


if __name__ == "__main__":
    main()
