"""Stopping policies for `adaptive`: when is one more wave of samples worth it?

After each wave the vote state is summarized as
`(drawn k, votes for the leader, votes for the runner-up, leader's reward bin)`.
A policy maps that state to "stop" or "draw more".

* :class:`ConsistencyPolicy` -- no fitting (the default with no table):
  adaptive-consistency's Beta rule, stop once P(leader's true share > 1/2 of
  the two top answers) >= `confidence`; and give up once `give_up_after`
  samples all disagree, because a scattered vote rarely converges.
* :class:`TablePolicy` -- learned offline from replay data (:func:`fit_policy`).
  For every state it stores the expected accuracy gain of sampling on to
  `max_n` instead of answering now, estimated by Monte-Carlo over random draw
  orders of recorded problems and shrunk toward coarser states where data is
  thin. It stops when that gain falls to `threshold` or below, i.e. when the
  marginal value of more samples is below their cost. The threshold is picked
  by inner cross-validation on the training problems only: the cheapest one
  whose accuracy stays within `tolerance` of sampling all `max_n`.
  With `objective="agreement"` the fit needs no labels: the value of more
  samples is P(the current leader is not the final leader).
  Options for weak models with no reward scores (fitted on SmolLM2-135M, see
  bench/results/strategies/live_smollm2.md): `state="vote+distinct"` adds the
  number of distinct answers and abstentions to the state; `difficulty_bins`
  splits the table by the prompt's predicted difficulty (the router's
  P(success), or :mod:`strategies.difficulty` offline), so hopeless prompts
  stop early; `rel_tolerance` picks the cheapest threshold keeping a share of
  full-N accuracy; :func:`select_policy` also picks among such families by
  inner CV.

Training may read correctness labels of *training* problems; at run time a
policy sees only answers and reward scores. Evaluate with held-out folds
(`strategies.evaluation.cross_fit`).

A table is small JSON (`TablePolicy.save` / `load_policy`), so the gateway can
ship one per model family. :mod:`strategies.value_policy` is the other kind
`load_policy` reads: it prices each further sample against its tokens and
weighs votes by sample reliability (the SmolLM2-135M headline).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

from .votes import Tally, tally


class StoppingPolicy(Protocol):
    max_n: int
    schedule: list[int]

    def should_stop(self, t: Tally, max_n: int) -> bool: ...


def checkpoints(first_wave: int, wave: int, max_n: int) -> list[int]:
    """Sample counts after each wave: first_wave, first_wave+wave, ..., max_n."""
    out, k = [], min(first_wave, max_n)
    while True:
        out.append(k)
        if k >= max_n:
            return out
        k = min(k + wave, max_n)


# ----------------------------------------------------------- no-fit default


def _beta_tail_above_half(a: int, b: int) -> float:
    """P(p > 1/2) for p ~ Beta(a, b), integers a, b >= 1 (binomial identity)."""
    n = a + b - 1
    return sum(math.comb(n, j) for j in range(a)) / 2**n


@dataclass
class ConsistencyPolicy:
    max_n: int = 8
    schedule: list[int] = field(default_factory=lambda: checkpoints(2, 1, 8))
    confidence: float = 0.9
    give_up_after: int = 4

    def should_stop(self, t: Tally, max_n: int) -> bool:
        if t.drawn >= max_n:
            return True
        if t.top == 0:
            return False
        if t.drawn >= self.give_up_after and t.distinct == t.drawn:
            return True
        return _beta_tail_above_half(t.top + 1, t.second + 1) >= self.confidence


# ------------------------------------------------------------ learned table


def state_key(t: Tally, edges: Sequence[float]) -> tuple[int, int, int, int]:
    score = t.leader_mean_score()
    rbin = 0 if score is None or not edges else sum(score > e for e in edges) + 1
    return (t.drawn, t.top, t.second, rbin)


STATES = ("vote", "vote+distinct")


def _coarse_keys(
    key: tuple[int, int, int, int], t: Tally | None = None, state: str = "vote", dbin: int | None = None
) -> list[str]:
    """Cell keys, finest first. `vote+distinct` adds the number of distinct
    answers and abstentions as the finest level: with no reward scores, a
    scattered vote (every answer different, or none parsed) is the clearest
    sign that more samples will not settle it. With a difficulty bin every
    vote key is split by the prompt's predicted difficulty first, shrinking
    toward the pooled `k` cell: on a prompt the model almost never solves,
    more votes rarely change whether the answer is right."""
    k, top, second, rbin = key
    margin = min(top - second, 3)
    keys = [f"{k}|{top}|{second}|{rbin}", f"{k}|{top}|{second}", f"{k}|m{margin}", f"{k}"]
    if state == "vote+distinct" and t is not None:
        abstain = min(t.drawn - sum(t.counts.values()), 2)
        keys.insert(0, f"{k}|{top}|{second}|{rbin}|d{min(t.distinct, 6)}|a{abstain}")
    if dbin is not None:
        keys = [f"D{dbin}|{x}" for x in keys] + [f"{k}"]
    return keys


def difficulty_bin(p: float | None, edges: Sequence[float]) -> int | None:
    if p is None or not edges:
        return None
    return sum(p >= e for e in edges)  # quantile edges: an edge value belongs to the bin above


@dataclass
class TablePolicy:
    max_n: int
    schedule: list[int]
    threshold: float
    score_edges: list[float]
    # key -> [weight (effective problems), mean value of continuing]
    cells: dict[str, list[float]]
    objective: str = "gain"
    prior_strength: float = 2.0
    meta: dict[str, Any] = field(default_factory=dict)
    state: str = "vote"
    # Bins of the prompt's predicted difficulty (empty: the table ignores it).
    difficulty_edges: list[float] = field(default_factory=list)
    # Set per request by `with_difficulty`; None reads the pooled cells.
    difficulty: float | None = None

    def with_difficulty(self, p: float | None) -> "TablePolicy":
        """A copy for one prompt (the table itself is shared by requests)."""
        return dataclasses.replace(self, difficulty=p)

    def value(self, t: Tally) -> float:
        """Estimated value of sampling on: shrink each level toward the coarser one."""
        keys = _coarse_keys(state_key(t, self.score_edges), t, self.state,
                            difficulty_bin(self.difficulty, self.difficulty_edges))
        est = None
        for key in reversed(keys):  # coarsest first
            w, v = self.cells.get(key, (0.0, 0.0))
            if est is None:
                est = v if w > 0 else 1.0  # an unseen k: assume sampling on pays
            else:
                est = (w * v + self.prior_strength * est) / (w + self.prior_strength)
        return float(est if est is not None else 1.0)

    def should_stop(self, t: Tally, max_n: int) -> bool:
        if t.drawn >= max_n:
            return True
        if t.top == 0:
            return False
        return self.value(t) <= self.threshold

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "table",
            "objective": self.objective,
            "state": self.state,
            "difficulty_edges": self.difficulty_edges,
            "max_n": self.max_n,
            "schedule": self.schedule,
            "threshold": self.threshold,
            "score_edges": self.score_edges,
            "prior_strength": self.prior_strength,
            "cells": {k: [round(w, 4), round(v, 6)] for k, (w, v) in sorted(self.cells.items())},
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n")


def load_policy(path: str | Path) -> Any:
    """A stopping policy from JSON: a :class:`TablePolicy` or a
    :class:`~strategies.value_policy.ValuePolicy` (by its `kind`)."""
    obj = json.loads(Path(path).read_text())
    if obj.get("kind") == "value":
        from .value_policy import ValuePolicy  # imports this module

        return ValuePolicy.from_json(obj)
    if obj.get("kind") != "table":
        raise ValueError(f"{path}: not a stopping-policy table")
    return TablePolicy(
        max_n=int(obj["max_n"]), schedule=[int(x) for x in obj["schedule"]], threshold=float(obj["threshold"]),
        score_edges=[float(x) for x in obj["score_edges"]],
        cells={k: [float(v[0]), float(v[1])] for k, v in obj["cells"].items()},
        objective=obj.get("objective", "gain"), prior_strength=float(obj.get("prior_strength", 2.0)),
        meta=obj.get("meta", {}), state=obj.get("state", "vote"),
        difficulty_edges=[float(x) for x in obj.get("difficulty_edges", [])],
    )


# ------------------------------------------------------------------ fitting


@dataclass(frozen=True)
class Problem:
    """One recorded problem, as the fitter and simulator see it."""

    answers: list[str | None]
    scores: list[float | None]
    correct: list[bool]
    completion_tokens: list[int]
    # Predicted P(one sample is correct) for the prompt (the router's difficulty
    # estimate, or any prompt-only model); None when there is none.
    difficulty: float | None = None
    # The prompt text (the user turn), for policies with prompt features.
    prompt: str = ""
    # The samples' texts, for vote weights that read the worked arithmetic; None: not recorded.
    texts: list[str] | None = None


def _answer_correct(p: Problem, answer: str | None) -> bool:
    if answer is None:
        return False
    return any(c for a, c in zip(p.answers, p.correct) if a == answer)


def _orders(n_problems: int, n_samples: list[int], perms: int, seed: int) -> list[list[list[int]]]:
    rng = random.Random(seed)
    out = []
    for i in range(n_problems):
        idx = list(range(n_samples[i]))
        per = []
        for _ in range(perms):
            rng.shuffle(idx)
            per.append(list(idx))
        out.append(per)
    return out


_TRAJ_CACHE: dict[tuple[int, tuple[int, ...], tuple[int, ...]], list[Tally]] | None = None


def _trajectories(p: Problem, order: list[int], schedule: list[int]) -> list[Tally]:
    """`tally` of the first k draws for every k in `schedule`, built incrementally.

    Inside :func:`select_policy` the same draw orders are replayed for every
    candidate family, so tallies are memoized there (only there: the cache
    holds references to the problems)."""
    if _TRAJ_CACHE is not None:
        key = (id(p), tuple(order), tuple(schedule))
        hit = _TRAJ_CACHE.get(key)
        if hit is None:
            hit = _TRAJ_CACHE[key] = _build_trajectories(p, order, schedule)
        return hit
    return _build_trajectories(p, order, schedule)


def _build_trajectories(p: Problem, order: list[int], schedule: list[int]) -> list[Tally]:
    out: list[Tally] = []
    counts: dict[str, int] = {}
    sums: dict[str, float] = {}
    first: dict[str, int] = {}
    has_scores = False
    i = 0
    for k in schedule:
        while i < k:
            a, sc = p.answers[order[i]], p.scores[order[i]]
            has_scores = has_scores or sc is not None
            if a is not None:
                counts[a] = counts.get(a, 0) + 1
                sums[a] = sums.get(a, 0.0) + (sc or 0.0)
                first.setdefault(a, i)
            i += 1
        out.append(Tally(k, dict(counts), dict(sums), dict(first), has_scores))
    return out


def _score_edges(problems: Sequence[Problem], bins: int) -> list[float]:
    vals = sorted(s for p in problems for s in p.scores if s is not None)
    if not vals or bins <= 1:
        return []
    return [vals[int(len(vals) * q / bins)] for q in range(1, bins)]


def _fit_cells(
    problems: Sequence[Problem], schedule: list[int], edges: list[float], objective: str, perms: int, seed: int,
    state: str = "vote", difficulty_edges: Sequence[float] = (),
) -> dict[str, list[float]]:
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    orders = _orders(len(problems), [len(p.answers) for p in problems], perms, seed)
    for p, per in zip(problems, orders):
        dbin = difficulty_bin(p.difficulty, difficulty_edges)
        for order in per:
            traj = _trajectories(p, order, schedule)
            final = traj[-1].leader
            final_ok = _answer_correct(p, final)
            for t in traj[:-1]:
                if objective == "agreement":
                    value = float(t.leader != final)
                elif objective == "flip":
                    # P(sampling on changes whether the answer is right), either way:
                    # like `agreement` it ignores noise that cancels out, like `gain`
                    # it ignores leader changes among wrong answers.
                    value = float(_answer_correct(p, t.leader) != final_ok)
                else:
                    value = float(final_ok) - float(_answer_correct(p, t.leader))
                for key in _coarse_keys(state_key(t, edges), t, state, dbin):
                    cell = sums[key]
                    cell[0] += 1.0 / perms
                    cell[1] += value / perms
    return {k: [w, v / w] for k, (w, v) in sums.items() if w > 0}


@dataclass(frozen=True)
class SimResult:
    accuracy: float
    mean_completion_tokens: float
    mean_calls: float


def _for_problem(policy: Any, p: Problem) -> Any:
    """The policy as it runs on this prompt (with its predicted difficulty, if any)."""
    if hasattr(policy, "for_prompt"):  # reads the prompt itself, as adaptive runs it
        return policy.for_prompt(p.prompt)
    if p.difficulty is not None and hasattr(policy, "with_difficulty"):
        return policy.with_difficulty(p.difficulty)
    return policy


def simulate_per_problem(
    policy: StoppingPolicy, problems: Sequence[Problem], *, perms: int = 20, seed: int = 0
) -> list[SimResult]:
    """Per problem, the mean over `perms` random draw orders (for bootstrap CIs)."""
    out = []
    orders = _orders(len(problems), [len(p.answers) for p in problems], perms, seed)
    for p, per in zip(problems, orders):
        pol = _for_problem(policy, p)
        max_n = min(pol.max_n, len(p.answers))
        sched = [k for k in pol.schedule if k < max_n] + [max_n]
        # Per-sample vote weights, as adaptive computes them (None: one sample, one vote).
        weights = pol.vote_weights(p.answers, p.completion_tokens, p.prompt, p.texts) if hasattr(pol, "vote_weights") else None
        acc = tok = calls = 0.0
        for order in per:
            for k in sched:
                t = tally([p.answers[j] for j in order[:k]], [p.scores[j] for j in order[:k]],
                          [weights[j] for j in order[:k]] if weights is not None else None)
                if pol.should_stop(t, max_n):
                    break
            acc += _answer_correct(p, t.leader)
            tok += sum(p.completion_tokens[j] for j in order[:k])
            calls += k
        out.append(SimResult(acc / perms, tok / perms, calls / perms))
    return out


def simulate(
    policy: StoppingPolicy, problems: Sequence[Problem], *, perms: int = 20, seed: int = 0
) -> SimResult:
    """Fast replay of the adaptive stopping rule over recorded problems (no I/O)."""
    rows = simulate_per_problem(policy, problems, perms=perms, seed=seed)
    n = max(len(rows), 1)
    return SimResult(sum(r.accuracy for r in rows) / n, sum(r.mean_completion_tokens for r in rows) / n,
                     sum(r.mean_calls for r in rows) / n)


def _sweep(
    policy: TablePolicy, problems: Sequence[Problem], grid: Sequence[float], *, perms: int, seed: int
) -> dict[float, tuple[float, float]]:
    """`simulate` for every threshold in `grid` at once.

    A state's value does not depend on the threshold, so each trajectory is
    tallied and valued once; a threshold only decides where it stops. Returns
    per threshold (sum over problems of accuracy, of mean tokens), i.e.
    `simulate(...).accuracy * len(problems)` and likewise for tokens.
    """
    out = {th: [0.0, 0.0] for th in grid}
    orders = _orders(len(problems), [len(p.answers) for p in problems], perms, seed)
    for p, per in zip(problems, orders):
        pp = _for_problem(policy, p)
        max_n = min(policy.max_n, len(p.answers))
        sched = [k for k in policy.schedule if k < max_n] + [max_n]
        for order in per:
            traj = _trajectories(p, order, sched)
            values = [math.inf if t.top == 0 else pp.value(t) for t in traj[:-1]] + [-math.inf]
            ok = [float(_answer_correct(p, t.leader)) for t in traj]
            toks = [float(sum(p.completion_tokens[j] for j in order[:k])) for k in sched]
            for th in grid:
                i = next(i for i, v in enumerate(values) if v <= th)
                out[th][0] += ok[i] / perms
                out[th][1] += toks[i] / perms
    return {th: (a, t) for th, (a, t) in out.items()}


DEFAULT_GRID = (-1.0, 0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5)


@dataclass
class _InnerCurve:
    """Inner cross-validated accuracy and tokens per threshold (sums over problems)."""

    stats: dict[float, list[float]]
    full_acc: float
    full_tok: float
    n: int

    def acc(self, th: float) -> float:
        return self.stats[th][0] / self.n

    def tok(self, th: float) -> float:
        return self.stats[th][1] / self.n


def _inner_curve(
    problems: Sequence[Problem], schedule: list[int], edges: list[float], objective: str, state: str,
    grid: Sequence[float], max_n: int, perms: int, inner_folds: int, seed: int,
    difficulty_edges: Sequence[float] = (), prior_strength: float = 2.0,
) -> _InnerCurve:
    # Every threshold is scored on problems whose cells it was not fitted on.
    rng = random.Random(seed)
    idx = list(range(len(problems)))
    rng.shuffle(idx)
    folds = [idx[f::inner_folds] for f in range(inner_folds)] if len(problems) >= inner_folds else [idx]
    stats = {th: [0.0, 0.0] for th in grid}
    full_acc = full_tok = 0.0
    for f, val_idx in enumerate(folds):
        held = set(val_idx)
        train = [problems[i] for i in idx if i not in held] or list(problems)
        val = [problems[i] for i in val_idx]
        cells = _fit_cells(train, schedule, edges, objective, perms, seed + f, state, difficulty_edges)
        full = simulate(_AlwaysMax(max_n, schedule), val, perms=perms, seed=seed + 100 + f)
        full_acc += full.accuracy * len(val)
        full_tok += full.mean_completion_tokens * len(val)
        pol = TablePolicy(max_n, schedule, 0.0, edges, cells, objective, prior_strength=prior_strength, state=state,
                          difficulty_edges=list(difficulty_edges))
        for th, (acc_sum, tok_sum) in _sweep(pol, val, grid, perms=perms, seed=seed + 100 + f).items():
            stats[th][0] += acc_sum
            stats[th][1] += tok_sum
    n = max(len(problems), 1)
    return _InnerCurve(stats, full_acc / n, full_tok / n, n)


def _difficulty_edges(problems: Sequence[Problem], bins: int) -> list[float]:
    vals = sorted(p.difficulty for p in problems if p.difficulty is not None)
    if bins <= 1 or len(vals) < bins:
        return []
    return sorted({vals[int(len(vals) * q / bins)] for q in range(1, bins)})


def _pick_threshold(
    curve: _InnerCurve, grid: Sequence[float], token_weight: float | None, tolerance: float,
    rel_tolerance: float | None,
) -> float:
    if rel_tolerance is not None:
        # The cheapest threshold that keeps (1 - rel_tolerance) of drawing all max_n.
        floor = (1.0 - rel_tolerance) * curve.full_acc - 1e-12
        ok = [th for th in grid if curve.acc(th) >= floor]
        return min(ok, key=lambda th: (curve.tok(th), -th)) if ok else min(grid)
    if token_weight is not None:
        def utility(th: float) -> float:
            return curve.acc(th) / max(curve.full_acc, 1e-9) - token_weight * curve.tok(th) / max(curve.full_tok, 1e-9)

        # Ties go to the smaller threshold (the more conservative stop).
        return max(grid, key=lambda th: (round(utility(th), 9), -th))
    ok = [th for th in grid if curve.acc(th) >= curve.full_acc - tolerance - 1e-12]
    return min(ok, key=lambda th: (curve.stats[th][1], -th)) if ok else min(grid)


def fit_policy(
    problems: Sequence[Problem],
    *,
    max_n: int,
    first_wave: int = 1,
    wave: int = 1,
    objective: str = "agreement",
    token_weight: float | None = 0.01,
    tolerance: float = 0.005,
    rel_tolerance: float | None = None,
    state: str = "vote",
    difficulty_bins: int = 0,
    prior_strength: float = 2.0,
    score_bins: int = 3,
    perms: int = 20,
    inner_folds: int = 5,
    thresholds: Sequence[float] | None = None,
    seed: int = 0,
) -> TablePolicy:
    """Fit a :class:`TablePolicy` on `problems` (training problems only).

    The threshold is chosen on inner cross-validation folds. With
    `rel_tolerance` it is the cheapest threshold whose accuracy keeps
    `1 - rel_tolerance` of always drawing `max_n` (the form the live target
    takes: "98% of majority@16"). Otherwise, with `token_weight` (the default)
    it maximizes `accuracy / full_accuracy - token_weight * tokens / full_tokens`,
    i.e. drawing all `max_n` samples must buy more than `token_weight` relative
    accuracy to be worth it; this is smoother than a hard constraint when few
    problems are informative. With `token_weight=None` it is the cheapest
    threshold whose accuracy is within `tolerance` (absolute) of always drawing `max_n`.

    `difficulty_bins > 1` splits the table by the problems' predicted
    difficulty (`Problem.difficulty`, quantile bins); at run time the policy
    then needs `with_difficulty(p)` for each prompt.
    """
    if objective not in ("gain", "agreement", "flip"):
        raise ValueError(f"unknown objective {objective!r}")
    if state not in STATES:
        raise ValueError(f"unknown state {state!r}; known: {STATES}")
    schedule = checkpoints(first_wave, wave, max_n)
    edges = _score_edges(problems, score_bins)
    grid = list(thresholds) if thresholds is not None else list(DEFAULT_GRID)
    dedges = _difficulty_edges(problems, difficulty_bins)
    curve = _inner_curve(problems, schedule, edges, objective, state, grid, max_n, perms, inner_folds, seed, dedges,
                         prior_strength)
    best = _pick_threshold(curve, grid, token_weight, tolerance, rel_tolerance)
    cells = _fit_cells(problems, schedule, edges, objective, perms, seed, state, dedges)
    return TablePolicy(
        max_n, schedule, best, edges, cells, objective, prior_strength=prior_strength, state=state,
        difficulty_edges=dedges,
        meta={
            "problems": len(problems), "token_weight": token_weight, "tolerance": tolerance,
            "rel_tolerance": rel_tolerance, "perms": perms,
            "inner_folds": min(inner_folds, len(problems)) if len(problems) >= inner_folds else 1,
            "inner_full_accuracy": round(curve.full_acc, 4),
            "inner_curve": {str(th): [round(curve.acc(th), 4), round(curve.tok(th), 1)] for th in grid},
        },
    )


def select_policy(
    problems: Sequence[Problem],
    *,
    max_n: int,
    candidates: Sequence[dict[str, Any]],
    rel_tolerance: float,
    perms: int = 20,
    inner_folds: int = 5,
    seed: int = 0,
    **common: Any,
) -> TablePolicy:
    """Choose the policy family too (objective, state features) by inner CV.

    Each candidate's threshold curve is cross-validated on `problems` (the
    training problems only); the winner is the candidate + threshold with the
    fewest inner tokens among those keeping `1 - rel_tolerance` of always
    drawing `max_n` (if none does, the most accurate). It is then refitted on
    all of `problems`."""
    global _TRAJ_CACHE
    _TRAJ_CACHE = {}
    try:
        return _select_policy(problems, max_n=max_n, candidates=candidates, rel_tolerance=rel_tolerance, perms=perms,
                              inner_folds=inner_folds, seed=seed, **common)
    finally:
        _TRAJ_CACHE = None


def _select_policy(
    problems: Sequence[Problem], *, max_n: int, candidates: Sequence[dict[str, Any]], rel_tolerance: float,
    perms: int, inner_folds: int, seed: int, **common: Any,
) -> TablePolicy:
    best: tuple[tuple[float, float], dict[str, Any], float] | None = None
    grid = list(common.pop("thresholds", None) or DEFAULT_GRID)
    first_wave, wave = common.pop("first_wave", 1), common.pop("wave", 1)
    schedule = checkpoints(first_wave, wave, max_n)
    edges = _score_edges(problems, common.pop("score_bins", 3))
    for cand in candidates:
        dedges = _difficulty_edges(problems, int(cand.get("difficulty_bins", 0)))
        curve = _inner_curve(problems, schedule, edges, cand.get("objective", "agreement"), cand.get("state", "vote"),
                             grid, max_n, perms, inner_folds, seed, dedges, float(cand.get("prior_strength", 2.0)))
        floor = (1.0 - rel_tolerance) * curve.full_acc - 1e-12
        for th in grid:
            # Rank: feasible first, then fewer tokens; infeasible ones by accuracy.
            rank = (0.0, curve.tok(th)) if curve.acc(th) >= floor else (1.0, -curve.acc(th))
            if best is None or rank < best[0]:
                best = (rank, dict(cand), th)
    assert best is not None
    _, cand, th = best
    # Refit on all training problems at the chosen threshold (inner_folds=1: no second CV).
    pol = fit_policy(problems, max_n=max_n, first_wave=first_wave, wave=wave, perms=perms, inner_folds=1,
                     seed=seed, rel_tolerance=rel_tolerance, thresholds=[th], **{**common, **cand})
    pol.meta["selected"] = {**cand, "threshold": th}
    return pol


@dataclass
class _AlwaysMax:
    max_n: int
    schedule: list[int]

    def should_stop(self, t: Tally, max_n: int) -> bool:
        return t.drawn >= max_n
