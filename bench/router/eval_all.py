"""Full-dataset router runs: import -> train -> eval over split seeds, mean +- std.

    python -m bench.router.eval_all                       # all datasets, seeds 0-4, MiniLM+text featurizer
    python -m bench.router.eval_all --datasets routellm-gsm8k --seeds 0 --featurizers minilm static

Writes commit-ready reports under bench/results/router/: SUMMARY.md (mean +- std
vs baselines) and, for seed 0 of each dataset/featurizer, the eval markdown + PNG.
Intermediate data and artifacts go to ~/.cache/ttc-router/bench (never the repo).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from contracts.environment import apply_environment_defaults
from bench.paths import DATA
from bench.paths import RESULTS as ALL_RESULTS
from bench.router.splits import DATASETS, ensure_split
from router.artifact import read_manifest
from router.features import ONNX_DEFAULT_MAX_TOKENS, ONNX_FEATURIZERS, TOKEN_ID_FEATURIZERS
from router.features.cache import default_cache_dir
from router.lab.evaluate import EvalResult, evaluate
from router.lab.importers import read_prices
from router.lab.metrics import quality_at_cost
from router.lab.outcomes import read_outcomes
from router.lab.report import write_report
from router.lab.train import TrainConfig, train_router

# Auxiliary regressors and the datasets they are meant for (others ignore them).
AUX_FOR = {"gsm8k-steps": ("routellm-gsm8k",), "gsm8k-train": ("routellm-gsm8k",)}
METHODS = ("router", "knn", "logistic", "mlp", "random", "oracle")
KEYS = ("aiq", "apgr", "cpt50", "cpt80", "match_best_cost_fraction", "quality_at_cheapest")
# Issue 22's mixing-line target: router AIQ >= random mixing - this, and the router's curve at the
# best single model's cost >= its quality - this.
MIXING_TOLERANCE = 0.002
RESULTS = ALL_RESULTS / "router"


BAG_LABEL = {"off": "", "auto": "+bag", "on": "+bag-on"}


def variant_label(featurizer: str, aux: list[str], task_prior: bool, select_by: str = "aiq",
                  corpus: list[str] | None = None, token_bag: str = "off", task_c: float | None = None,
                  tag: str = "") -> str:
    """Name of a router variant in file names and the summary, e.g. `static+gsm8k-steps`.

    `+bag` = token bag kept when CV says so (the `train` default for static featurizers),
    `+bag-on` = always; no suffix = off (the router before the token bag). `+c1`: the task
    classifier's C fixed at 1 (before it was chosen by CV); no suffix = chosen by CV."""
    bag = BAG_LABEL[token_bag] if featurizer in TOKEN_ID_FEATURIZERS else ""
    return (featurizer + "".join(f"+{a}" for a in aux) + "".join(f"+proj-{c}" for c in corpus or [])
            + ("" if task_prior else "+notask") + ("" if select_by == "aiq" else f"+{select_by}") + bag
            + ("" if task_c is None or not task_prior else f"+c{task_c:g}") + (f"+{tag}" if tag else ""))


def run_one(source: str, seed: int, featurizer: str, work: Path, folds: int,
            baseline_embedder: str = "minilm", reuse: bool = False,
            aux: list[str] | None = None, task_prior: bool = True,
            select_by: str = "aiq", corpus: list[str] | None = None,
            token_bag: str = "off", task_c: float | None = None, tag: str = "",
            max_tokens: int | None = None) -> dict[str, dict[str, float | None]]:
    aux = [a for a in (aux or []) if source in AUX_FOR.get(a, ())]
    corpus = [c for c in (corpus or []) if source in AUX_FOR.get(c, ())]
    label = variant_label(featurizer, aux, task_prior, select_by, corpus, token_bag, task_c, tag) + ("" if folds == 3 else f"+f{folds}")
    done = work / "runs" / f"{source}-{label}-{baseline_embedder}-seed{seed}.json"
    if done.exists():  # finished earlier: reruns and restarts only add missing seeds
        return json.loads(done.read_text())
    split = ensure_split(source, seed, work)
    train_rows = read_outcomes(split / "train.jsonl")
    test_rows = read_outcomes(split / "test.jsonl")
    art = work / "artifacts" / f"{source}-{label}-seed{seed}"
    t0 = time.time()
    if reuse and (art / "manifest.json").exists():
        selected = read_manifest(art).cv["selected"]
    else:
        # Auxiliary data must not contain a held-out prompt: the test split is excluded
        # (and eval re-checks every auxiliary example against it).
        config = TrainConfig(featurizer=featurizer, cv_folds=folds, seed=seed, aux=aux,
                             aux_data_dir=str(DATA) if aux or corpus else None, task_prior=task_prior,
                             select_by=select_by, projection_corpus=corpus, token_bag=token_bag,
                             task_prior_c=task_c, max_tokens=max_tokens)
        selected = train_router(train_rows, art, read_prices(split / "prices.json"), config,
                                exclude_prompts=[r.prompt for r in test_rows]).cv["selected"]
    t1 = time.time()
    result: EvalResult = evaluate(art, test_rows, train_rows, seed=seed, baseline_embedder=baseline_embedder)
    t2 = time.time()
    if seed == 0:
        write_report(result, RESULTS / f"{source}-{label}.md",
                     f"{source}, router {label}, split seed 0 (held-out {DATASETS[source]:.0%})")
    print(f"{source} seed {seed} {label}: train {t1 - t0:.0f}s eval {t2 - t1:.0f}s "
          f"selected {selected} router AIQ {result.router.aiq:.3f} APGR {result.router.apgr} "
          f"kNN AIQ {result.baselines['knn'].aiq:.3f}", flush=True)
    out = {"router": result.router.model_dump(), **{k: v.model_dump() for k, v in result.baselines.items()}}
    out["_best_single"] = result.best_single.model_dump()  # type: ignore[assignment]
    out["_selected"] = selected  # type: ignore[assignment]
    out["_seed"] = seed  # type: ignore[assignment]
    # R(c) of the router's hull at the best single model's cost: >= its quality means the curve reaches its point.
    curve = result.curves["router"]
    out["_router_at_best_single"] = quality_at_cost(curve.cost, curve.quality, result.best_single.cost)  # type: ignore[assignment]
    cv = read_manifest(art).cv
    out["_shrinkage"] = cv.get("shrinkage", {})  # type: ignore[assignment]
    out["_task_prior"] = cv.get("task_prior", {})  # type: ignore[assignment]
    out["_knn_stack"] = {k: v for k, v in cv.get("knn_stack", {}).items() if k != "tried"}  # type: ignore[assignment]
    out["_token_bag"] = cv.get("token_bag", {})  # type: ignore[assignment]
    out["_cv"] = {k: cv.get(k) for k in ("stacked_oof_aiq", "stacked_oof_match_best", "calibrated_brier")}  # type: ignore[assignment]
    done.parent.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(out))
    return out


def _agg(values: list[float | None]) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "n/a"
    missing = len(values) - len(vals)
    text = f"{np.mean(vals):.3f} ± {np.std(vals):.3f}"
    return text + (f" ({missing} n/a)" if missing else "")


def summarize(all_runs: dict[str, dict[str, list[dict]]]) -> str:
    lines = ["# Router evaluation: mean ± std over split seeds", "",
             "Each row: held-out split per seed, router trained on the rest, baselines fitted in the same run "
             "on the same split (kNN/logistic/MLP on plain MiniLM embeddings; random = mixing single models; "
             "oracle = ceiling, not a baseline). CPT values are fractions of calls to the strong model; "
             "`match best` is the cost to match the best single model, as a fraction of its cost (n/a: never).",
             ""]
    for key, runs in all_runs.items():
        source, featurizer = key.split("|")
        seeds = len(runs["router"])
        lines += [f"## {source} (router `{featurizer}`, {seeds} seeds, held-out {DATASETS[source]:.0%})", "",
                  "| method | AIQ | APGR | CPT(50%) | CPT(80%) | match best | quality at cheapest |",
                  "|---|---|---|---|---|---|---|"]
        for method in METHODS:
            if method in runs:
                cells = [_agg([r[k] for r in runs[method]]) for k in KEYS]
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
        best = runs["_best_single"][0]
        emb = (runs.get("_baseline_embedder") or ["minilm"])[0]
        lines += ["", f"best single model: `{best['model']}` (seed 0: quality {best['quality']:.3f}); "
                  f"baselines on {'the router embedding' if emb == 'router' else 'MiniLM'} embeddings", ""]
    return "\n".join(lines) + "\n"


def mixing_line(all_runs: dict[str, dict[str, list]], tolerance: float = MIXING_TOLERANCE) -> str:
    """Per dataset and seed: router AIQ against random mixing, and the router's curve at the best single model's point.

    `AIQ ok`: router AIQ >= random AIQ - `tolerance`. `reaches best`: R(c_best) >= q_best - `tolerance`, where R is
    the router's non-decreasing hull (the curve AIQ integrates) and (c_best, q_best) the best single model's
    held-out cost and quality. `shrink` is the prior shrinkage chosen by CV on the training split.
    """
    lines = ["| dataset | seed | router AIQ | random AIQ | margin | AIQ ok | best single | best cost $ | best quality "
             "| router at best cost | gap | reaches best | shrink |", "|" + "---|" * 13]
    for key, runs in all_runs.items():
        source, label = key.split("|")
        for i, (router, random, best) in enumerate(zip(runs["router"], runs["random"], runs["_best_single"], strict=True)):
            seed = runs["_seed"][i] if len(runs.get("_seed", [])) > i else "?"
            at_best = runs["_router_at_best_single"][i] if len(runs.get("_router_at_best_single", [])) > i else None
            shrink = (runs["_shrinkage"][i] if len(runs.get("_shrinkage", [])) > i else {}).get("chosen")
            margin = router["aiq"] - random["aiq"]
            gap = None if at_best is None else at_best - best["quality"]
            lines.append(
                f"| {source} `{label}` | {seed} | {router['aiq']:.4f} | {random['aiq']:.4f} | {margin:+.4f} "
                f"| {'yes' if margin >= -tolerance else '**no**'} | `{best['model']}` | {best['cost']:.3g} "
                f"| {best['quality']:.4f} | {'n/a' if at_best is None else f'{at_best:.4f}'} "
                f"| {'n/a' if gap is None else f'{gap:+.4f}'} "
                f"| {'n/a' if gap is None else 'yes' if gap >= -tolerance else '**no**'} "
                f"| {'n/a' if shrink is None else f'{shrink:g}'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--featurizers", nargs="+", default=["minilm"])
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--proj-corpus", nargs="*", default=[], choices=["gsm8k-train"],
                        help="unlabeled corpora for the static-proj map (used on the datasets they are meant for)")
    parser.add_argument("--aux", nargs="*", default=[], choices=["gsm8k-steps"],
                        help="auxiliary regressors (used on the datasets they are meant for)")
    parser.add_argument("--no-task-prior", action="store_true", help="ablation: never stack the task prior")
    parser.add_argument("--select-by", default="aiq", choices=["aiq", "brier"],
                        help="candidate selection: out-of-fold routing AIQ on train (default) or Brier")
    parser.add_argument("--token-bag", default="auto", choices=["auto", "on", "off"],
                        help="static featurizers: token-bag LSA columns (auto = kept if CV on train improves)")
    parser.add_argument("--task-c", type=float, default=None,
                        help="fix the task classifier's C (default: chosen by out-of-fold task log-loss)")
    parser.add_argument("--tag", default="", help="suffix for this run's label (a rerun after a default changed)")
    parser.add_argument("--summary", default="SUMMARY.md")
    parser.add_argument("--baseline-embedder", default="minilm", choices=["minilm", "router"],
                        help="embedding for the kNN/logistic/MLP baselines (router = the router's own embedder)")
    parser.add_argument("--reuse-artifacts", action="store_true", help="evaluate existing artifacts instead of retraining")
    parser.add_argument("--summary-only", action="store_true", help="rebuild the summary from saved results")
    parser.add_argument("--mixing-line", action="store_true",
                        help="also print, per dataset and seed, router AIQ vs random mixing and the router's curve "
                             "at the best single model's point (issue 22's target)")
    parser.add_argument("--raw", default="raw.json", help="raw results file under the bench cache (one per concurrent run)")
    parser.add_argument("--held-out", type=float, default=None,
                        help="held-out fraction for every selected dataset instead of its default (a sensitivity check); "
                             "splits and runs get their own cache folder, labels end in +heldoutNN, "
                             "and the summary goes to SUMMARY-heldoutNN.md unless --summary is given")
    parser.add_argument("--max-tokens", type=int, default=None,
                        help=f"ONNX featurizers: truncate prompts to this many tokens (default {ONNX_DEFAULT_MAX_TOKENS}); "
                             "their labels always end in +tN")
    args = parser.parse_args()
    work = default_cache_dir() / "bench"
    if args.held_out is not None:
        suffix = f"heldout{round(args.held_out * 100)}"
        for source in args.datasets:
            DATASETS[source] = args.held_out
        work = work / suffix  # other splits of the same seeds: never mix them with the default ones
        args.tag = "+".join(filter(None, [args.tag, suffix]))
        if args.summary == "SUMMARY.md":
            args.summary = f"SUMMARY-{suffix}.md"
    raw_path = work / args.raw
    raw: dict[str, dict[str, list]] = json.loads(raw_path.read_text()) if raw_path.exists() else {}
    RESULTS.mkdir(parents=True, exist_ok=True)
    for featurizer in [] if args.summary_only else args.featurizers:
        tag = args.tag
        if featurizer in ONNX_FEATURIZERS:  # the token window changes the features: always in the label
            tag = "+".join(filter(None, [tag, f"t{args.max_tokens or ONNX_DEFAULT_MAX_TOKENS}"]))
        for source in args.datasets:
            aux = [a for a in args.aux if source in AUX_FOR[a]]
            corpus = [c for c in args.proj_corpus if source in AUX_FOR[c]]
            key = f"{source}|{variant_label(featurizer, aux, not args.no_task_prior, args.select_by, corpus, args.token_bag, args.task_c, tag)}"
            key += "" if args.folds == 3 else f"+f{args.folds}"
            runs: dict[str, list] = {}
            for seed in args.seeds:
                out = run_one(source, seed, featurizer, work, args.folds, args.baseline_embedder, args.reuse_artifacts,
                              aux, not args.no_task_prior, args.select_by, args.proj_corpus, args.token_bag,
                              args.task_c, tag, args.max_tokens)
                for method, vals in out.items():
                    runs.setdefault(method, []).append(vals)
            runs["_baseline_embedder"] = [args.baseline_embedder]
            raw[key] = runs
            raw_path.parent.mkdir(parents=True, exist_ok=True)
            raw_path.write_text(json.dumps(raw, indent=1))
            (RESULTS / args.summary).write_text(summarize(_merged(work)), encoding="utf-8")
    (RESULTS / args.summary).write_text(summarize(_merged(work)), encoding="utf-8")
    print((RESULTS / args.summary).read_text())
    if args.mixing_line:
        print(mixing_line(_merged(work)))


def _merged(work: Path) -> dict[str, dict[str, list]]:
    """All saved runs (one raw*.json per concurrent bench process), keyed by dataset|featurizer."""
    merged: dict[str, dict[str, list]] = {}
    for path in sorted(work.glob("raw*.json")):
        merged.update(json.loads(path.read_text()))
    # Per-seed result files are written as each seed finishes; they win over raw files.
    per_key: dict[str, dict[int, dict]] = {}
    embedders: dict[str, str] = {}
    for path in sorted((work / "runs").glob("*.json")):
        stem = path.stem
        seed = int(stem.rsplit("-seed", 1)[1])
        body = stem.rsplit("-seed", 1)[0]
        source = next(name for name in DATASETS if body.startswith(name + "-"))
        featurizer, embedder = body[len(source) + 1 :].rsplit("-", 1)
        key = f"{source}|{featurizer}"
        per_key.setdefault(key, {})[seed] = json.loads(path.read_text())
        embedders[key] = embedder
    for key, seeds in per_key.items():
        old = merged.get(key)
        if old is not None:
            # Seeds missing from the per-seed files come from the older raw file (seed order 0..n-1).
            for i in range(len(old["router"])):
                seeds.setdefault(i, {m: v[i] for m, v in old.items() if not m.startswith("_baseline") and len(v) > i})
        runs: dict[str, list] = {}
        for seed in sorted(seeds):
            for method, vals in seeds[seed].items():
                runs.setdefault(method, []).append(vals)
        runs["_baseline_embedder"] = [embedders[key]]
        merged[key] = runs
    order = {name: i for i, name in enumerate(DATASETS)}
    return dict(sorted(merged.items(), key=lambda kv: (order[kv[0].split("|")[0]], kv[0])))


if __name__ == "__main__":
    apply_environment_defaults()
    main()
