"""Fit :class:`~strategies.policy.TablePolicy` stopping tables on recorded problems.

For every vote state the table stores the expected value of sampling on to
`max_n` instead of answering now, estimated by Monte-Carlo over random draw
orders of training problems; the stopping threshold is picked by inner
cross-validation (:func:`fit_policy`), and :func:`select_policy` also picks
the policy family (objective, state features, difficulty bins). See
:mod:`strategies.policy` for what the table means at run time.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..policy import STATES, TablePolicy, checkpoints, coarse_keys, difficulty_bin, state_key
from ..votes import Tally
from .simulate import AlwaysMax, Problem, answer_correct, draw_orders, simulate


class Tallies:
    """`tally` of the first k draws for every k in a schedule, along one draw order of a problem.

    :func:`select_policy` replays the same draw orders for every candidate
    family, so its fit memoizes them (`memoize=True`). The memo is keyed by the
    problems' ids and holds references to them: it belongs to one fit and dies
    with it."""

    def __init__(self, memoize: bool = False) -> None:
        self._memo: dict[tuple[int, tuple[int, ...], tuple[int, ...]], list[Tally]] | None = {} if memoize else None

    def along(self, p: Problem, order: list[int], schedule: list[int]) -> list[Tally]:
        if self._memo is None:
            return _build_trajectories(p, order, schedule)
        key = (id(p), tuple(order), tuple(schedule))
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = _build_trajectories(p, order, schedule)
        return hit


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
    state: str = "vote", difficulty_edges: Sequence[float] = (), *, tallies: Tallies,
) -> dict[str, list[float]]:
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    orders = draw_orders(len(problems), [len(p.answers) for p in problems], perms, seed)
    for p, per in zip(problems, orders):
        dbin = difficulty_bin(p.difficulty, difficulty_edges)
        for order in per:
            traj = tallies.along(p, order, schedule)
            final = traj[-1].leader
            final_ok = answer_correct(p, final)
            for t in traj[:-1]:
                if objective == "agreement":
                    value = float(t.leader != final)
                elif objective == "flip":
                    # P(sampling on changes whether the answer is right), either way:
                    # like `agreement` it ignores noise that cancels out, like `gain`
                    # it ignores leader changes among wrong answers.
                    value = float(answer_correct(p, t.leader) != final_ok)
                else:
                    value = float(final_ok) - float(answer_correct(p, t.leader))
                for key in coarse_keys(state_key(t, edges), t, state, dbin):
                    cell = sums[key]
                    cell[0] += 1.0 / perms
                    cell[1] += value / perms
    return {k: [w, v / w] for k, (w, v) in sums.items() if w > 0}


def _sweep(
    policy: TablePolicy, problems: Sequence[Problem], grid: Sequence[float], *, perms: int, seed: int,
    tallies: Tallies,
) -> dict[float, tuple[float, float]]:
    """`simulate` for every threshold in `grid` at once.

    A state's value does not depend on the threshold, so each trajectory is
    tallied and valued once; a threshold only decides where it stops. Returns
    per threshold (sum over problems of accuracy, of mean tokens), i.e.
    `simulate(...).accuracy * len(problems)` and likewise for tokens.
    """
    out = {th: [0.0, 0.0] for th in grid}
    orders = draw_orders(len(problems), [len(p.answers) for p in problems], perms, seed)
    for p, per in zip(problems, orders):
        pp = policy.with_difficulty(p.difficulty) if p.difficulty is not None else policy
        max_n = min(policy.max_n, len(p.answers))
        sched = [k for k in policy.schedule if k < max_n] + [max_n]
        for order in per:
            traj = tallies.along(p, order, sched)
            values = [math.inf if t.top == 0 else pp.value(t) for t in traj[:-1]] + [-math.inf]
            ok = [float(answer_correct(p, t.leader)) for t in traj]
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
    difficulty_edges: Sequence[float] = (), prior_strength: float = 2.0, *, tallies: Tallies,
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
        cells = _fit_cells(train, schedule, edges, objective, perms, seed + f, state, difficulty_edges,
                           tallies=tallies)
        full = simulate(AlwaysMax(max_n, schedule), val, perms=perms, seed=seed + 100 + f)
        full_acc += full.accuracy * len(val)
        full_tok += full.mean_completion_tokens * len(val)
        pol = TablePolicy(max_n, schedule, 0.0, edges, cells, objective, prior_strength=prior_strength, state=state,
                          difficulty_edges=list(difficulty_edges))
        for th, (acc_sum, tok_sum) in _sweep(pol, val, grid, perms=perms, seed=seed + 100 + f,
                                             tallies=tallies).items():
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
    tallies: Tallies | None = None,
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

    `tallies`: the draw-order tallies to reuse (:func:`select_policy` shares
    one memo across its candidates); by default none are kept.
    """
    tallies = tallies if tallies is not None else Tallies()
    if objective not in ("gain", "agreement", "flip"):
        raise ValueError(f"unknown objective {objective!r}")
    if state not in STATES:
        raise ValueError(f"unknown state {state!r}; known: {STATES}")
    schedule = checkpoints(first_wave, wave, max_n)
    edges = _score_edges(problems, score_bins)
    grid = list(thresholds) if thresholds is not None else list(DEFAULT_GRID)
    dedges = _difficulty_edges(problems, difficulty_bins)
    curve = _inner_curve(problems, schedule, edges, objective, state, grid, max_n, perms, inner_folds, seed, dedges,
                         prior_strength, tallies=tallies)
    best = _pick_threshold(curve, grid, token_weight, tolerance, rel_tolerance)
    cells = _fit_cells(problems, schedule, edges, objective, perms, seed, state, dedges, tallies=tallies)
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
    tallies = Tallies(memoize=True)  # every candidate replays the same draw orders
    best: tuple[tuple[float, float], dict[str, Any], float] | None = None
    grid = list(common.pop("thresholds", None) or DEFAULT_GRID)
    first_wave, wave = common.pop("first_wave", 1), common.pop("wave", 1)
    schedule = checkpoints(first_wave, wave, max_n)
    edges = _score_edges(problems, common.pop("score_bins", 3))
    for cand in candidates:
        dedges = _difficulty_edges(problems, int(cand.get("difficulty_bins", 0)))
        curve = _inner_curve(problems, schedule, edges, cand.get("objective", "agreement"), cand.get("state", "vote"),
                             grid, max_n, perms, inner_folds, seed, dedges, float(cand.get("prior_strength", 2.0)),
                             tallies=tallies)
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
                     seed=seed, rel_tolerance=rel_tolerance, thresholds=[th], tallies=tallies, **{**common, **cand})
    pol.meta["selected"] = {**cand, "threshold": th}
    return pol
