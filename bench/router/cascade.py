"""The `cascade` strategy on RouteLLM GSM8K, against prompt-only routing, on the router bench's splits.

    python -m bench.router.cascade                 # seeds 0-4; writes bench/results/router/CASCADE.md
    python -m bench.router.cascade --seeds 0 1 --out /tmp/cascade.md

A router decides from the prompt alone. The cascade asks the weak model
(Mixtral) first and escalates to the strong one (GPT-4) when its escalation
model (`strategies.escalation`, exactly what `ttc strategies fit-escalation`
fits and the gateway serves) predicts the answer is wrong. The RouteLLM GSM8K
table records both models' real answers to every prompt, so the cascade is
replayed on them without calling anything. Per split seed (the same seeded
50/50 splits as `bench/router/eval_all.py`), on the training half only:

* the escalation model is fitted on Mixtral's answers;
* `+ prior`: it also reads a prompt-only prior, P(Mixtral right | prompt) from
  a logistic regression on MiniLM (out-of-fold on the training half, as the
  fit requires; a stand-in for the router's difficulty);
* `prompt only` is that logistic router: P(GPT-4 right) - P(Mixtral right),
  from the prompt (same features as the prior), the information any router has.

APGR and CPT(50%) are on RouteLLM's axis, the share of prompts sent to the
strong model, sweeping the escalation threshold. A cascade also pays for the
weak call on every prompt; the last column is CPT(50%) as all-in cost (every
weak call plus the escalations) over the cost of sending everything to GPT-4,
from the split's recorded token costs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from contracts.environment import apply_environment_defaults
from bench.paths import RESULTS
from bench.router.splits import C_GRID, ensure_split, pgr_point, split, strong_weak
from router.features.cache import default_cache_dir
from router.features.sentence import SentenceEmbedder
from router.lab import metrics
from router.lab.matrix import OutcomeMatrix
from router.lab.outcomes import prompt_key, read_outcomes
from strategies.lab.fit_escalation import fit_escalation


def responses_by_prompt(seed: int, model: str) -> dict[str, str]:
    """`model`'s recorded answer to every prompt (each split holds them all, on one side or the other)."""
    where = ensure_split("routellm-gsm8k", seed, default_cache_dir() / "bench")
    rows = read_outcomes(where / "train.jsonl") + read_outcomes(where / "test.jsonl")
    out = {prompt_key(r.prompt): r.response for r in rows if r.model == model and r.response}
    if not out:
        raise SystemExit(f"the cached split in {where} has no responses: delete it and rerun (it predates them)")
    return out


def prompt_logistic(x_train: np.ndarray, right: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P(right) for the test prompts, and out-of-fold for the training prompts; C by 3-fold log-loss."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def model() -> object:
        return make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=list(C_GRID), cv=3, scoring="neg_log_loss",
                                                                   max_iter=3000))
    y = right >= 0.5
    oof = cross_val_predict(model(), x_train, y, cv=5, method="predict_proba")[:, 1]
    return model().fit(x_train, y).predict_proba(x_test)[:, 1], oof  # type: ignore[attr-defined]


def all_in_cost_fraction(score: np.ndarray, m: OutcomeMatrix, target: float = 0.5) -> float | None:
    """Every weak call plus the escalated strong calls at PGR `target`, over the all-strong cost."""
    s, w = strong_weak(m)
    frac, pgr = metrics.pgr_curve(score, m.score[:, w], m.score[:, s])
    share = metrics.cpt(frac, pgr, target)
    if share is None:
        return None
    weak_cost, strong_cost = np.nansum(m.cost[:, w]), np.nansum(m.cost[:, s])
    # The threshold picks prompts by their answers, not their cost: the mean strong call is the fair price.
    return float((weak_cost + share * strong_cost) / strong_cost)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", type=Path, default=RESULTS / "router" / "CASCADE.md")
    args = parser.parse_args()
    embedder = SentenceEmbedder()
    results: dict[str, list[tuple[float, float | None, float | None, float | None]]] = {}
    answers: dict[str, str] = {}
    for seed in args.seeds:
        train, test = split("routellm-gsm8k", seed)
        s, w = strong_weak(train)
        weak_model = train.models[w]
        answers = answers or responses_by_prompt(seed, weak_model)
        n = len(train.prompts)
        x = embedder.transform(train.prompts + test.prompts)
        p_strong, _ = prompt_logistic(x[:n], train.score[:, s], x[n:])
        p_weak_prompt, p_weak_oof = prompt_logistic(x[:n], train.score[:, w], x[n:])
        tr_answers = [answers[prompt_key(p)] for p in train.prompts]
        te_answers = [answers[prompt_key(p)] for p in test.prompts]
        plain = fit_escalation(train.prompts, tr_answers, train.score[:, w], model=weak_model)
        primed = fit_escalation(train.prompts, tr_answers, train.score[:, w], model=weak_model, priors=p_weak_oof)
        p_plain = np.array([plain.p_right(p, a) for p, a in zip(test.prompts, te_answers, strict=True)])
        p_primed = np.array([primed.p_right(p, a, q) for p, a, q in zip(test.prompts, te_answers, p_weak_prompt,
                                                                          strict=True)])
        variants: dict[str, tuple[np.ndarray, float | None]] = {
            "prompt only: P(strong right) - P(weak right), from the prompt": (p_strong - p_weak_prompt, None),
            "cascade: escalate on the answer": (-p_plain, plain.cv["auc"]),
            "cascade: escalate on the answer + prompt prior": (-p_primed, primed.cv["auc"]),
        }
        for name, (score, train_auc) in variants.items():
            apgr, cpt50 = pgr_point(score, test)
            all_in = all_in_cost_fraction(score, test)
            results.setdefault(name, []).append((apgr, cpt50, all_in, train_auc))
            print(f"seed {seed} {name}: APGR {apgr:.3f} CPT50 {cpt50} all-in {all_in} train AUC {train_auc}", flush=True)
    lines = ["# `cascade` on RouteLLM GSM8K vs prompt-only routing", "",
             "Made by `python -m bench.router.cascade` (see its docstring for the protocol).", "",
             f"Held-out 50%, split seeds {', '.join(map(str, args.seeds))}, mean ± std.", "",
             ("| method | APGR | CPT(50%), strong-call share | CPT(50%), all-in cost / all-strong cost | "
              "escalation AUC (train, out-of-fold) |"), "|---|---|---|---|---|"]
    for name, vals in results.items():
        a, c5, cost, auc = zip(*vals, strict=True)
        c5v, costv = [v for v in c5 if v is not None], [v for v in cost if v is not None]
        aucv = [v for v in auc if v is not None]
        lines.append(f"| {name} | {np.mean(a):.3f} ± {np.std(a):.3f} | {np.mean(c5v):.3f} ± {np.std(c5v):.3f} "
                     f"| {np.mean(costv):.3f} ± {np.std(costv):.3f} | {f'{np.mean(aucv):.3f}' if aucv else 'n/a'} |")
    lines += ["", "Per seed (APGR / CPT(50%) strong-call share / all-in):", "",
              "| method | " + " | ".join(f"seed {s}" for s in args.seeds) + " |", "|---|" + "---|" * len(args.seeds)]
    for name, vals in results.items():
        cells = [f"{a:.3f} / {c if c is None else round(c, 3)} / {x if x is None else round(x, 3)}" for a, c, x, _ in vals]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    apply_environment_defaults()
    main()
