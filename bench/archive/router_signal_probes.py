"""Diagnostics, not routers: where the remaining per-prompt signal is (and is not) on each dataset.

    python -m bench.archive.router_signal_probes                 # all three probes, writes bench/results/router/PROBES.md
    python -m bench.archive.router_signal_probes --probes gsm8k-lm

Each probe uses the same seeded splits as bench/router/eval_all.py and picks
every hyperparameter by cross-validation on the training half only.

* ``gsm8k-lm``: would a richer prompt representation help on RouteLLM GSM8K?
  One logistic regression per model on (a) prompt length alone, (b) MiniLM,
  (c) the mean-pooled hidden states of the local Gemma-3-270M GGUF model
  (llama.cpp, ~0.4 s a prompt here, far too slow to serve), (d) both.
* ``mmlu-subject``: how much of RouteLLM MMLU's APGR is the subject alone?
  Routing by the per-subject strong-minus-weak gain of the training half, with
  the *true* subject (a ceiling no router has) and with the subject predicted
  by a MiniLM or a character n-gram TF-IDF classifier.
* ``llmrouter-task``: the same on LLMRouter, scored as the issue scores it
  (cost to match the best single model): a constant per-task success rate per
  model, with the true task vs the task predicted from the prompt.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from contracts.environment import apply_environment_defaults
from bench.paths import RESULTS as ALL_RESULTS
from bench.router.splits import C_GRID, pgr_point, split, strong_weak
from router.features.cache import default_cache_dir
from router.features.sentence import SentenceEmbedder
from router.lab import metrics
from router.lab.matrix import OutcomeMatrix
from router.lab.selection import routing_metrics

RESULTS = ALL_RESULTS / "router"


def gain_logistic(xtr: np.ndarray, right: np.ndarray, xte: np.ndarray, c: float) -> np.ndarray:
    """Predicted P(strong right) - P(weak right); `right` holds the (strong, weak) outcome columns."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(xtr)
    a, b = scaler.transform(xtr), scaler.transform(xte)
    p = [LogisticRegression(C=c, max_iter=3000).fit(a, right[:, j] >= 0.5).predict_proba(b)[:, 1] for j in (0, 1)]
    return p[0] - p[1]


def cv_c(x: np.ndarray, train: OutcomeMatrix) -> float:
    """C with the best out-of-fold APGR on the training half (3 folds)."""
    from sklearn.model_selection import KFold

    s, w = strong_weak(train)
    right = train.score[:, [s, w]]
    best = (-np.inf, C_GRID[0])
    for c in C_GRID:
        score = np.zeros(len(x))
        for tr, va in KFold(3, shuffle=True, random_state=0).split(x):
            score[va] = gain_logistic(x[tr], right[tr], x[va], c)
        frac, pgr = metrics.pgr_curve(score, train.score[:, w], train.score[:, s])
        best = max(best, (metrics.apgr(frac, pgr), c))
    return best[1]


def gemma_features(prompts: list[str]) -> np.ndarray:
    """Mean-pooled last hidden states of Gemma-3-270M (Q4_K_M) through llama.cpp, cached per prompt set."""
    key = hashlib.sha256("\n\x00".join(prompts).encode()).hexdigest()[:16]
    cache = default_cache_dir() / "probes" / f"gemma3-270m-{key}.npy"
    if cache.exists():
        return np.load(cache)
    from llama_cpp import Llama
    from tqdm import tqdm

    from gateway.local_models import gemma3_path

    llm = Llama(model_path=str(gemma3_path()), embedding=True, pooling_type=1, n_ctx=1024, n_threads=2, verbose=False)
    out = np.array([llm.embed(p) for p in tqdm(prompts, desc="gemma features", unit="prompt")], dtype=np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, out)
    return out


def probe_gsm8k_lm(seeds: list[int]) -> list[str]:
    embedder = SentenceEmbedder()
    rows: dict[str, list[tuple[float, float | None, float]]] = {}
    for seed in seeds:
        train, test = split("routellm-gsm8k", seed)
        everything = train.prompts + test.prompts
        ordered = sorted(everything)  # one cache entry per prompt set, whatever the split
        position = {p: i for i, p in enumerate(ordered)}
        minilm, gemma = embedder.transform(everything), gemma_features(ordered)[[position[p] for p in everything]]
        length = np.log([[len(p)] for p in everything])
        n = len(train.prompts)
        for name, x in {"prompt length only": length, "MiniLM": minilm, "Gemma-3-270M hidden states": gemma,
                        "MiniLM + Gemma": np.hstack([minilm, gemma])}.items():
            c = cv_c(x[:n], train)
            s, w = strong_weak(train)
            apgr, cpt50 = pgr_point(gain_logistic(x[:n], train.score[:, [s, w]], x[n:], c), test)
            rows.setdefault(name, []).append((apgr, cpt50, c))
            print(f"gsm8k seed {seed} {name}: APGR {apgr:.3f} CPT50 {cpt50} C {c}", flush=True)
    lines = ["## RouteLLM GSM8K: logistic per model on richer prompt features", "",
             f"Seeds {seeds[0]}-{seeds[-1]}, held-out 50%, C by 3-fold out-of-fold APGR on the training half.", "",
             "| features | APGR | CPT(50%) | C chosen |", "|---|---|---|---|"]
    for name, vals in rows.items():
        a, c5, cs = zip(*vals, strict=True)
        lines.append(f"| {name} | {np.mean(a):.3f} ± {np.std(a):.3f} | {np.mean([v for v in c5 if v is not None]):.3f} "
                     f"| {', '.join(f'{v:g}' for v in cs)} |")
    return lines + [""]


def _task_probe(source: str, seeds: list[int], score_fn: Callable[[np.ndarray, OutcomeMatrix], dict[str, float | None]],
                rate_fn: Callable[[OutcomeMatrix], np.ndarray]) -> dict[str, list[dict[str, float | None]]]:
    """Route by sum_t P(t | prompt) * rate[t] for the true task and for predicted tasks."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    embedder = SentenceEmbedder()
    out: dict[str, list[dict[str, float | None]]] = {}
    for seed in seeds:
        train, test = split(source, seed)
        names = sorted({t for t in train.tasks if t})
        col = {t: i for i, t in enumerate(names)}
        ytr = np.array([col[t] for t in train.tasks])  # type: ignore[index]
        yte = np.array([col.get(t, -1) for t in test.tasks])  # type: ignore[arg-type]
        rates = rate_fn(train)  # (tasks, ...) table from the training half only
        probas = {"true task (ceiling)": np.eye(len(names))[np.clip(yte, 0, None)]}
        emb_tr, emb_te = embedder.transform(train.prompts), embedder.transform(test.prompts)
        scaler = StandardScaler().fit(emb_tr)
        probas["MiniLM task classifier"] = LogisticRegression(C=0.03, max_iter=3000).fit(
            scaler.transform(emb_tr), ytr).predict_proba(scaler.transform(emb_te))
        vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 5), lowercase=False, min_df=3, sublinear_tf=True,
                              max_features=300_000)
        probas["char n-gram TF-IDF task classifier"] = LogisticRegression(C=30, max_iter=3000).fit(
            vec.fit_transform(train.prompts), ytr).predict_proba(vec.transform(test.prompts))
        for name, p in probas.items():
            result = score_fn(p @ rates, test) | {"task accuracy": float((p.argmax(1) == yte).mean())}
            out.setdefault(name, []).append(result)
            print(f"{source} seed {seed} {name}: {result}", flush=True)
    return out


def _table(title: str, note: str, results: dict[str, list[dict[str, float | None]]], keys: list[str]) -> list[str]:
    lines = [title, "", note, "", "| task source | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for name, runs in results.items():
        cells = []
        for k in keys:
            vals = [r[k] for r in runs if r[k] is not None]
            cells.append(f"{np.mean(vals):.3f} ± {np.std(vals):.3f}" if vals else "n/a")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def probe_mmlu_subject(seeds: list[int]) -> list[str]:
    def gain_by_subject(train: OutcomeMatrix) -> np.ndarray:
        s, w = strong_weak(train)
        tasks = np.array(train.tasks)
        gain = train.score[:, s] - train.score[:, w]
        overall = gain.mean()
        return np.array([(gain[tasks == n].sum() + 5 * overall) / ((tasks == n).sum() + 5) for n in sorted({t for t in train.tasks if t})])

    def score(route: np.ndarray, test: OutcomeMatrix) -> dict[str, float | None]:
        apgr, cpt50 = pgr_point(route, test)
        return {"APGR": apgr, "CPT(50%)": cpt50}

    res = _task_probe("routellm-mmlu", seeds, score, gain_by_subject)
    return _table("## RouteLLM MMLU: routing by subject alone",
                  f"Seeds {seeds[0]}-{seeds[-1]}, held-out 50%. Score = expected per-subject gain of GPT-4 over Mixtral "
                  "(training half, smoothed with 5 pseudo-prompts).", res, ["APGR", "CPT(50%)", "task accuracy"])


def probe_llmrouter_task(seeds: list[int]) -> list[str]:
    def rate_by_task(train: OutcomeMatrix) -> np.ndarray:
        tasks = np.array(train.tasks)
        return np.array([train.score[tasks == n].mean(axis=0) for n in sorted({t for t in train.tasks if t})])

    def score(quality: np.ndarray, test: OutcomeMatrix) -> dict[str, float | None]:
        routed = routing_metrics(quality, test.score, test.cost)
        return {"AIQ": routed["aiq"], "match best": routed["match_best"]}

    res = _task_probe("llmrouter", seeds, score, rate_by_task)
    return _table("## LLMRouter: a constant success rate per task and model",
                  f"Seeds {seeds[0]}-{seeds[-1]}, held-out 30%. Quality = sum_t P(t | prompt) x the training half's "
                  "success rate of each model on task t; routed by the utility sweep on recorded costs.",
                  res, ["AIQ", "match best", "task accuracy"])


PROBES = {"gsm8k-lm": probe_gsm8k_lm, "mmlu-subject": probe_mmlu_subject, "llmrouter-task": probe_llmrouter_task}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probes", nargs="+", default=list(PROBES), choices=list(PROBES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--mmlu-seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", default=str(RESULTS / "PROBES.md"))
    args = parser.parse_args()
    lines = ["# Where the per-prompt signal is: probes (diagnostics, not routers)", "",
             "Made by `python -m bench.archive.router_signal_probes`; see its docstring. Same splits as SUMMARY.md.", ""]
    for name in args.probes:
        lines += PROBES[name](args.mmlu_seeds if name == "mmlu-subject" else args.seeds)
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    apply_environment_defaults()
    main()
