"""Fit :class:`~strategies.value_policy.ValuePolicy` on recorded problems, with the two
models it ships in its JSON: sample reliability (vote weights,
:class:`~strategies.reliability.ReliabilityModel`) and the nearest-neighbour
prompt difficulty (:class:`~strategies.knn_difficulty.KnnDifficulty`).

Correctness labels of the training problems are read here, never at run time.
See :mod:`strategies.value_policy` for what the fitted tables mean.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..arith_check import Check, check_arithmetic
from ..knn_difficulty import KnnDifficulty, words
from ..reliability import ReliabilityModel, prompt_numbers
from ..stopping import checkpoints, difficulty_bin
from ..value_policy import Cells, ValuePolicy, state_keys
from ..votes import tally
from .simulate import Problem, answer_correct


@dataclass
class _Trajectories:
    """Fitting data: per trajectory (problem x draw order) and step, the state's
    cell keys as ids, whether the weighted leader is right, and the completion
    tokens of the sample drawn at that step."""

    key_names: list[str]
    keys: list[list[tuple[int, ...]]]
    correct: list[list[float]]
    tokens: list[list[float]]
    problem: list[int]  # which problem a trajectory draws from


def _trajectories(
    problems: Sequence[Problem], max_n: int, perms: int, seed: int, reliability: ReliabilityModel | None,
    dbins: Sequence[int | None], quantum: float,
) -> _Trajectories:
    rng = random.Random(seed)
    ids: dict[str, int] = {}
    out = _Trajectories([], [], [], [], [])
    for pi, (p, dbin) in enumerate(zip(problems, dbins)):
        n = min(max_n, len(p.answers))
        weights = reliability.weights_for(p.answers, p.completion_tokens, p.prompt, p.texts) if reliability else None
        idx = list(range(len(p.answers)))
        for _ in range(perms):
            rng.shuffle(idx)
            order = idx[:n]
            keys, correct = [], []
            for k in range(1, n + 1):
                part = order[:k]
                # The same tally and keys as at run time (adaptive), so fit and use cannot drift apart.
                t = tally([p.answers[j] for j in part], [p.scores[j] for j in part],
                          [weights[j] for j in part] if weights else None)
                keys.append(tuple(ids.setdefault(x, len(ids)) for x in state_keys(t, quantum, dbin)))
                correct.append(float(answer_correct(p, t.ranking[0] if t.counts else None)))
            out.keys.append(keys)
            out.correct.append(correct)
            out.tokens.append([float(p.completion_tokens[j]) for j in order])
            out.problem.append(pi)
    out.key_names = sorted(ids, key=ids.__getitem__)
    return out


def _estimate_ids(
    w: list[float], v: list[float], keys: tuple[int, ...], prior: float, own: dict[int, list[float]] | None = None,
) -> float | None:
    """`_estimate` over key ids (w: weights, v: weighted sums), leaving out `own` (key -> [w, v])."""
    est: float | None = None
    for key in keys:
        ow, ov = own.get(key, (0.0, 0.0)) if own else (0.0, 0.0)
        kw, kv = w[key] - ow, v[key] - ov
        if est is None:
            if kw <= 1e-12:
                return None
            est = kv / kw
        else:
            est = (kv + prior * est) / (max(kw, 0.0) + prior)
    return est


def _own(keys: list[list[tuple[int, ...]]], values: list[list[float]], trajs: list[int], per: float,
         step: int | None = None) -> dict[int, list[float]]:
    """One problem's contributions to the cells (key -> [w, v]), at one step or all."""
    out: dict[int, list[float]] = {}
    for i in trajs:
        steps = range(len(keys[i])) if step is None else [step]
        for s in steps:
            for key in keys[i][s]:
                cell = out.setdefault(key, [0.0, 0.0])
                cell[0] += per
                cell[1] += per * values[i][s]
    return out


def _cells(names: list[str], w: list[float], v: list[float]) -> Cells:
    return {names[i]: [w[i], v[i] / w[i]] for i in range(len(names)) if w[i] > 0}


class _Fitter:
    """Backward induction for any `lam`, with the stop values (which do not depend on it) computed once.

    Every decision made while fitting -- and so the training-problem token use
    the budget is checked against -- reads cells with the trajectory's own
    problem left out, as a held-out prompt would see them. In-sample cells know
    how each training problem ends and stop too early on it: a budget checked
    in-sample was overspent on held-out problems in our runs."""

    def __init__(self, data: _Trajectories, prior: float, per: float) -> None:
        self.data, self.prior, self.per = data, prior, per
        n = len(data.key_names)
        self.sw, self.sv = [0.0] * n, [0.0] * n
        for keys, correct in zip(data.keys, data.correct):
            for ks, c in zip(keys, correct):
                for key in ks:
                    self.sw[key] += per
                    self.sv[key] += per * c
        self.by_problem: dict[int, list[int]] = {}
        for i, pi in enumerate(data.problem):
            self.by_problem.setdefault(pi, []).append(i)
        self.stop = [[_estimate_ids(self.sw, self.sv, ks, prior) for ks in keys] for keys in data.keys]
        self.stop_loo: list[list[float | None]] = [[] for _ in data.keys]
        for trajs in self.by_problem.values():
            own = _own(data.keys, data.correct, trajs, per)
            for i in trajs:
                self.stop_loo[i] = [_estimate_ids(self.sw, self.sv, ks, prior, own) for ks in data.keys[i]]

    def fit(self, lam: float) -> tuple[Cells, Cells, float, float]:
        """Tables for `lam`, and the leave-one-problem-out accuracy and tokens of the policy they make."""
        d, n = self.data, len(self.data.key_names)
        cw, cv = [0.0] * n, [0.0] * n
        value = [c[-1] for c in d.correct]  # the return from the last step on: answer there
        loo_stop = [len(c) for c in d.correct]  # 1-based step where the left-out policy stops
        longest = max((len(c) for c in d.correct), default=0)
        for k in range(longest - 1, 0, -1):
            target: dict[int, float] = {}
            for i, c in enumerate(d.correct):
                if len(c) > k:
                    target[i] = value[i] - lam * d.tokens[i][k]
                    for key in d.keys[i][k - 1]:
                        cw[key] += self.per
                        cv[key] += self.per * target[i]
            for trajs in self.by_problem.values():
                live = [i for i in trajs if i in target]
                own: dict[int, list[float]] = {}
                for i in live:
                    for key in d.keys[i][k - 1]:
                        cell = own.setdefault(key, [0.0, 0.0])
                        cell[0] += self.per
                        cell[1] += self.per * target[i]
                for i in live:
                    keys = d.keys[i][k - 1]
                    # The fit itself uses all training problems ...
                    sv, cont = self.stop[i][k - 1], _estimate_ids(cw, cv, keys, self.prior)
                    value[i] = d.correct[i][k - 1] if _stops(sv, cont) else target[i]
                    # ... the token check leaves the trajectory's own problem out.
                    if _stops(self.stop_loo[i][k - 1], _estimate_ids(cw, cv, keys, self.prior, own)):
                        loo_stop[i] = k
        m = max(len(d.correct), 1)
        acc = sum(c[s - 1] for c, s in zip(d.correct, loo_stop)) / m
        tok = sum(sum(t[:s]) for t, s in zip(d.tokens, loo_stop)) / m
        return _cells(d.key_names, self.sw, self.sv), _cells(d.key_names, cw, cv), acc, tok


def _stops(stop: float | None, cont: float | None) -> bool:
    return stop is not None and cont is not None and stop >= cont


def fit_value_policy(
    problems: Sequence[Problem], *, max_n: int, token_budget: float = 0.30, perms: int = 40, seed: int = 0,
    prior_strength: float = 3.0, quantum: float = 0.5, difficulty_bins: int = 3, knn_k: int = 5,
    length_bins: int = 6, weighted: bool = True, bisection_steps: int = 10, arith_checks: bool = True,
) -> ValuePolicy:
    """Fit on training problems (their correctness labels are read here, never at run time).

    With `arith_checks` (and sample texts recorded), vote weights also read each
    sample's worked arithmetic (:mod:`strategies.arith_check`)."""
    reliability = None
    if weighted:
        checks = None
        if arith_checks and all(p.texts is not None for p in problems):
            checks = [check_arithmetic(p.prompt, text, a) for p in problems
                      for text, a in zip(p.texts or [], p.answers)]
        reliability = fit_reliability(
            ((a, t, prompt_numbers(p.prompt), c) for p in problems
             for a, t, c in zip(p.answers, p.completion_tokens, p.correct)), bins=length_bins, checks=checks)
    knn: KnnDifficulty | None = None
    edges: list[float] = []
    dbins: list[int | None] = [None] * len(problems)
    if difficulty_bins > 1 and all(p.prompt for p in problems):
        rates = [sum(p.correct) / max(len(p.correct), 1) for p in problems]
        knn = fit_knn_difficulty([p.prompt for p in problems], rates, k=knn_k)
        # Leave-one-out on the training problems, as a held-out prompt will see them.
        loo = [knn.predict(p.prompt, exclude=i) for i, p in enumerate(problems)]
        vals = sorted(v for v in loo if v is not None)
        edges = sorted({vals[len(vals) * q // difficulty_bins] for q in range(1, difficulty_bins)})
        dbins = [difficulty_bin(v, edges) for v in loo]
    data = _trajectories(problems, max_n, perms, seed, reliability, dbins, quantum)
    fitter = _Fitter(data, prior_strength, 1.0 / perms)
    full = sum(sum(t) for t in data.tokens) / max(len(data.tokens), 1)

    # In-sample tokens fall as lam grows; find the smallest lam within the budget.
    lo, hi = 0.0, 1e-3
    while fitter.fit(hi)[3] > token_budget * full and hi < 1.0:
        lo, hi = hi, hi * 2
    for _ in range(bisection_steps):
        mid = (lo + hi) / 2
        if fitter.fit(mid)[3] > token_budget * full:
            lo = mid
        else:
            hi = mid
    stop, cont, acc, tok = fitter.fit(hi)
    pol = ValuePolicy(max_n, checkpoints(1, 1, max_n), hi, stop, cont, reliability, knn, edges, prior_strength,
                      quantum)
    pol.meta = {"problems": len(problems), "perms": perms, "token_budget": token_budget,
                "train_accuracy": round(acc, 4), "train_tokens_vs_full": round(tok / max(full, 1e-9), 4)}
    return pol


def fit_reliability(
    samples: Iterable[tuple[str | None, int, frozenset[float], bool]], *, bins: int = 6, prior: float = 10.0,
    checks: Iterable[Check] | None = None,
) -> ReliabilityModel:
    """Fit from training samples `(answer, completion_tokens, prompt numbers, correct)`,
    and with `checks` (one per sample, from :func:`check_arithmetic`) also by the arithmetic check.

    Length bins start at quantiles of the training lengths (so the samples
    cut at the output cap get a bin of their own when there are many); each category's rate is
    shrunk toward the overall rate by `prior` pseudo-samples."""
    rows = list(samples)
    if not rows:
        return ReliabilityModel([], {})
    per_sample: list[Check | None] = list(checks) if checks is not None else [None] * len(rows)
    lengths = sorted(t for _, t, _, _ in rows)
    # Each quantile value opens a bin (upper bounds are one below it): when many samples stop at the
    # output cap, the cap is a quantile and those samples get a bin of their own.
    quantiles = {lengths[min(len(lengths) * q // bins, len(lengths) - 1)] for q in range(1, bins)}
    edges = sorted({q - 1 for q in quantiles if q > lengths[0]})
    model = ReliabilityModel(edges, {}, checks is not None)
    overall = sum(c for *_, c in rows) / len(rows)
    stats: dict[str, list[float]] = {}
    for (answer, tokens, numbers, correct), check in zip(rows, per_sample):
        cell = stats.setdefault(model.category(answer, tokens, numbers, check), [0.0, 0.0])
        cell[0] += 1
        cell[1] += float(correct)
    rates = {k: (s + prior * overall) / (n + prior) for k, (n, s) in stats.items()}
    best = max(rates.values()) or 1.0
    # A floor keeps a category's votes from vanishing: with every sample in it, they still decide.
    return ReliabilityModel(edges, {k: max(r / best, 0.01) for k, r in rates.items()}, model.checks)


def fit_knn_difficulty(prompts: Sequence[str], success: Sequence[float], *, k: int = 5) -> KnnDifficulty:
    return KnnDifficulty([words(p) for p in prompts], [float(s) for s in success], k)
