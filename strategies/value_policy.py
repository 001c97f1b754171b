"""A learned stopping policy that weighs accuracy against tokens directly.

:class:`~strategies.policy.TablePolicy` stops when "drawing all N" looks
worthless; here the alternative to stopping is what it really is, one more
sample and then the same question again. Per vote state the policy stores

* `stop`: P(the current leader is right), and
* `cont`: the value of drawing one more sample and then following the policy,
  net of that sample's tokens at `lam` accuracy per token,

both estimated on training problems by backward induction over random draw
orders (fitted Q-iteration with Monte-Carlo returns), each level shrunk toward
a coarser state where data is thin. It stops when `stop >= cont`.

What the state holds, all readable at run time without the answer key:

* the number drawn, the leader's and the runner-up's *weighted* votes and the
  number of distinct answers. Votes are weighted by sample reliability
  (:mod:`strategies.reliability`: worked arithmetic that checks out,
  completion length, answers that repeat a prompt number), and the final
  answer is the weighted vote's leader;
* the prompt's difficulty bin, from a nearest-neighbour model over the
  training prompts (:mod:`strategies.knn_difficulty`) shipped in the policy,
  so that prompts whose neighbours the model never solves stop at once.

`lam` is set by a token budget on the training problems: the smallest (most
accurate) `lam` whose policy uses at most `token_budget` of the tokens of
drawing all `max_n` there. Choosing it reads no held-out problem; evaluate the
policy on held-out folds (`strategies.evaluation.cross_fit_value`).
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .arith_check import check_arithmetic
from .knn_difficulty import KnnDifficulty, fit_knn_difficulty
from .policy import Problem, _answer_correct, checkpoints, difficulty_bin
from .reliability import ReliabilityModel, fit_reliability, prompt_numbers
from .votes import Tally, tally

Cells = dict[str, list[float]]  # key -> [weight (effective trajectories), mean value]


def state_keys(t: Tally, quantum: float, dbin: int | None) -> list[str]:
    """Cell keys of a vote state, coarsest first."""
    k, r = t.drawn, t.ranking
    w = t.weight_sums if t.weight_sums is not None else t.counts
    q0 = round(w[r[0]] / quantum) if r else 0
    q1 = round(w[r[1]] / quantum) if len(r) > 1 else 0
    keys = [f"{k}", f"{k}|m{min(q0 - q1, 4)}", f"{k}|{q0}|{q1}", f"{k}|{q0}|{q1}|d{min(t.distinct, 5)}"]
    if dbin is None:
        return keys
    return [f"{k}"] + [f"D{dbin}|{x}" for x in keys]


def _estimate(cells: Cells, keys: list[str], prior: float) -> float | None:
    est: float | None = None
    for key in keys:
        w, v = cells.get(key, (0.0, 0.0))
        if est is None:
            if w <= 0:
                return None
            est = v
        else:
            est = (w * v + prior * est) / (w + prior)
    return est


@dataclass
class ValuePolicy:
    max_n: int
    schedule: list[int]
    lam: float
    stop_cells: Cells
    cont_cells: Cells
    reliability: ReliabilityModel | None = None
    knn: KnnDifficulty | None = None
    difficulty_edges: list[float] = field(default_factory=list)
    prior_strength: float = 3.0
    quantum: float = 0.5
    meta: dict[str, Any] = field(default_factory=dict)
    # Set per request by `for_prompt` (the table itself is shared by requests).
    difficulty: float | None = None

    def for_prompt(self, prompt: str) -> ValuePolicy:
        if self.knn is None or not self.difficulty_edges:
            return self
        return dataclasses.replace(self, difficulty=self.knn.predict(prompt))

    def vote_weights(
        self, answers: Sequence[str | None], tokens: Sequence[int], prompt: str, texts: Sequence[str] | None = None,
    ) -> list[float] | None:
        return self.reliability.weights_for(answers, tokens, prompt, texts) if self.reliability else None

    def keys(self, t: Tally) -> list[str]:
        return state_keys(t, self.quantum, difficulty_bin(self.difficulty, self.difficulty_edges))

    def should_stop(self, t: Tally, max_n: int) -> bool:
        if t.drawn >= max_n:
            return True
        keys = self.keys(t)
        stop = _estimate(self.stop_cells, keys, self.prior_strength)
        cont = _estimate(self.cont_cells, keys, self.prior_strength)
        if stop is None or cont is None:
            return False  # a state never seen in training: keep sampling
        return stop >= cont

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "value", "max_n": self.max_n, "schedule": self.schedule, "lam": self.lam,
            "prior_strength": self.prior_strength, "quantum": self.quantum,
            "difficulty_edges": self.difficulty_edges,
            "reliability": self.reliability.to_json() if self.reliability else None,
            "knn": self.knn.to_json() if self.knn else None,
            "stop_cells": {k: [round(w, 4), round(v, 6)] for k, (w, v) in sorted(self.stop_cells.items())},
            "cont_cells": {k: [round(w, 4), round(v, 6)] for k, (w, v) in sorted(self.cont_cells.items())},
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json()) + "\n")

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ValuePolicy:
        return cls(
            max_n=int(obj["max_n"]), schedule=[int(x) for x in obj["schedule"]], lam=float(obj["lam"]),
            stop_cells={k: [float(w), float(v)] for k, (w, v) in obj["stop_cells"].items()},
            cont_cells={k: [float(w), float(v)] for k, (w, v) in obj["cont_cells"].items()},
            reliability=ReliabilityModel.from_json(obj["reliability"]) if obj.get("reliability") else None,
            knn=KnnDifficulty.from_json(obj["knn"]) if obj.get("knn") else None,
            difficulty_edges=[float(x) for x in obj.get("difficulty_edges", [])],
            prior_strength=float(obj.get("prior_strength", 3.0)), quantum=float(obj.get("quantum", 0.5)),
            meta=obj.get("meta", {}),
        )


# ------------------------------------------------------------------ fitting


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
                correct.append(float(_answer_correct(p, t.ranking[0] if t.counts else None)))
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
