"""Champion vs challenger: paired bootstrap on labelled held-out prompts, and the gate.

Both routers route the same held-out prompts over their whole cost-weight sweep; every
bootstrap draw resamples the prompts once and scores both routers on that draw (paired), so
the interval is on the *difference*, which is what a promotion decides on. Reported:

* AIQ (area under the cost-quality hull, router.lab.metrics), for any number of models;
* APGR where it applies (two models, the dearer one stronger);
* quality at matched cost: each router's hull quality at the cost the champion spends at its
  default cost weight (what the gateway serves), i.e. "same money, which is better".

The gate: promote only when the one-sided lower confidence bound of the AIQ improvement is
above zero at level alpha / rounds. A flywheel compares once a round, so over many rounds a
per-comparison 5% test would promote a no-better router in about one round out of twenty; the
Bonferroni split of a family-wise alpha over the planned rounds keeps that chance at alpha for
the whole run.

Cross-fitting (compare_crossfit) is the other way to get held-out scores: the challenger's
recipe is trained K times, each time without one fold of the labelled prompts, and each prompt
is scored by the fold router that never saw it. A reserved held-out share spends labels on the
gate alone; cross-fitting lets every label both train and test, at the price of K more
trainings, and of testing the recipe's fold routers rather than the promoted router itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel

from contracts.outcomes import OutcomeRow
from contracts.prices import Price
from router.api import LearnedRouter, load_router
from router.lab.evaluate import LeakageError
from router.lab.matrix import OutcomeMatrix, build_matrix
from router.lab.logdata import LoggedRequest, logged_traffic
from router.lab.offpolicy import Interval, OffPolicyResult, estimate_pair, resamples
from router.lab.outcomes import prompt_key
from router.lab.routing_scores import PredictedRouting, Scorer, mean_labels, predicted, sweep
from router.lab.train import expected_cost
from router.policy import choose_by_utility

SCHEMA = "ttc-router-compare/1"
GATE_METRICS = ("aiq", "apgr", "quality_at_matched_cost")


class Paired(BaseModel):
    champion: float
    challenger: float
    difference: Interval  # challenger - champion


class GateDecision(BaseModel):
    metric: str
    alpha_family: float
    rounds: int
    alpha: float  # per comparison: alpha_family / rounds
    lower_bound: float  # one-sided lower confidence bound of the improvement at 1 - alpha
    passed: bool
    reason: str


class HeldoutComparison(BaseModel):
    method: Literal["holdout", "crossfit"] = "holdout"
    folds: int | None = None  # crossfit: the challenger's score on each prompt is from a fold model not trained on it
    n_prompts: int
    models: list[str]
    n_boot: int
    seed: int
    aiq: Paired
    apgr: Paired | None
    quality_at_matched_cost: Paired
    matched_cost_usd: float


class CompareResult(BaseModel):
    schema_version: str = SCHEMA
    champion: dict[str, str]
    challenger: dict[str, str]
    heldout: HeldoutComparison
    gate: GateDecision
    offpolicy: OffPolicyResult | None = None
    offpolicy_note: str | None = None


def _paired(champ: float, chall: float, draws: np.ndarray, level: float) -> Paired:
    tail = (1.0 - level) / 2.0
    ok = draws[np.isfinite(draws)]
    low, high = (np.quantile(ok, [tail, 1.0 - tail]) if len(ok) else (float("nan"), float("nan")))
    return Paired(champion=champ, challenger=chall,
                  difference=Interval(estimate=chall - champ, low=float(low), high=float(high), level=level))


def _gate_arguments(gate_metric: str, alpha_family: float, rounds: int) -> None:
    if gate_metric not in GATE_METRICS:
        raise ValueError(f"gate metric must be one of {GATE_METRICS}, not {gate_metric!r}")
    if not 0 < alpha_family < 1 or rounds < 1:
        raise ValueError("alpha must lie in (0, 1) and rounds be at least 1")


def _heldout_matrix(models: list[str], prices: dict[str, Price], rows: Sequence[OutcomeRow]) -> OutcomeMatrix:
    test = build_matrix(mean_labels(rows), models, prices)
    if len(test.prompts) < 10:
        raise ValueError(f"need at least 10 held-out prompts, got {len(test.prompts)}")
    if not test.complete:
        raise ValueError("every held-out prompt needs an outcome for every model the routers cover")
    return test


def _refuse_leaks(test: OutcomeMatrix, trained: set[str], idx: np.ndarray | None = None) -> None:
    prompts = test.prompts if idx is None else [test.prompts[i] for i in idx]
    leaked = sum(prompt_key(p) in trained for p in prompts)
    if leaked:
        raise LeakageError(leaked)


def compare_heldout(champion: LearnedRouter, challenger: LearnedRouter, rows: Sequence[OutcomeRow], *,
                    n_boot: int = 2000, seed: int = 0, level: float = 0.95, cost_weight: float | None = None,
                    gate_metric: str = "aiq", alpha_family: float = 0.05, rounds: int = 6,
                    ) -> tuple[HeldoutComparison, GateDecision]:
    """Paired bootstrap of both routers on complete held-out rows. Raises LeakageError when a
    held-out prompt was in either router's training data, ValueError on unusable rows."""
    if set(champion.manifest.models) != set(challenger.manifest.models):
        raise ValueError(f"the routers cover different models: {champion.manifest.models} vs {challenger.manifest.models}")
    _gate_arguments(gate_metric, alpha_family, rounds)
    test = _heldout_matrix(champion.manifest.models, champion.manifest.prices, rows)
    _refuse_leaks(test, set(champion.manifest.train_prompt_sha256) | set(challenger.manifest.train_prompt_sha256))
    return _paired_gate(test, predicted(champion, test), predicted(challenger, test), n_boot=n_boot, seed=seed,
                        level=level, cost_weight=cost_weight, gate_metric=gate_metric, alpha_family=alpha_family,
                        rounds=rounds)


def compare_crossfit(champion: LearnedRouter, challenger: LearnedRouter,
                     folds: Sequence[tuple[LearnedRouter, Sequence[str]]], rows: Sequence[OutcomeRow], *,
                     n_boot: int = 2000, seed: int = 0, level: float = 0.95, cost_weight: float | None = None,
                     gate_metric: str = "aiq", alpha_family: float = 0.05, rounds: int = 6,
                     ) -> tuple[HeldoutComparison, GateDecision]:
    """The gate on cross-fitted predictions: `folds` pairs a router trained the challenger's way
    without some prompts with those prompts, and every labelled prompt is scored by the fold router
    that never saw it. So every labelled prompt counts as held out, not a reserved share; what is
    tested is the challenger's training recipe on this data, and `challenger` (the same recipe on
    all of it) is what a pass promotes. Its cost trade-off (scale, default weight) is applied to
    every fold's predictions. Raises LeakageError when a prompt's fold router or the champion was
    trained on it, ValueError when the folds do not cover the rows once each."""
    models = champion.manifest.models
    if any(set(r.manifest.models) != set(models) for r in (challenger, *(f for f, _ in folds))):
        raise ValueError(f"the routers cover different models than the champion's {models}")
    _gate_arguments(gate_metric, alpha_family, rounds)
    test = _heldout_matrix(models, champion.manifest.prices, rows)
    _refuse_leaks(test, set(champion.manifest.train_prompt_sha256))
    position = {prompt_key(p): i for i, p in enumerate(test.prompts)}
    owner = np.full(len(test.prompts), -1)
    for k, (_, prompts) in enumerate(folds):
        for key in {prompt_key(p) for p in prompts}:
            if key in position:
                if owner[position[key]] >= 0:
                    raise ValueError("a prompt is in two folds")
                owner[position[key]] = k
    if (owner < 0).any():
        raise ValueError(f"{int((owner < 0).sum())} labelled prompts are in no fold")
    m = len(models)
    quality, cost = np.zeros((len(test.prompts), m)), np.zeros((len(test.prompts), m))
    for k, (fold_router, _) in enumerate(folds):
        idx = np.flatnonzero(owner == k)
        if len(idx):
            _refuse_leaks(test, set(fold_router.manifest.train_prompt_sha256), idx)
            part = predicted(fold_router, test, idx)
            quality[idx], cost[idx] = part.quality, part.cost
    recipe = challenger.manifest
    crossfitted = PredictedRouting(quality=quality, cost=cost, cost_scale_usd=recipe.cost_scale_usd,
                                   default_cost_weight=recipe.default_cost_weight)
    held, gate = _paired_gate(test, predicted(champion, test), crossfitted, n_boot=n_boot, seed=seed, level=level,
                              cost_weight=cost_weight, gate_metric=gate_metric, alpha_family=alpha_family,
                              rounds=rounds)
    gate.reason += f"; the challenger's recipe cross-fitted over {len(folds)} folds"
    return held.model_copy(update={"method": "crossfit", "folds": len(folds)}), gate


def _paired_gate(test: OutcomeMatrix, champ_pred: PredictedRouting, chall_pred: PredictedRouting, *, n_boot: int,
                 seed: int, level: float, cost_weight: float | None, gate_metric: str, alpha_family: float,
                 rounds: int) -> tuple[HeldoutComparison, GateDecision]:
    scorer = Scorer(test)
    two = len(test.models) == 2
    strong, weak = scorer.dear, (1 - scorer.dear if two else -1)
    pgr = bool(two and test.score[:, strong].mean() > test.score[:, weak].mean())
    champ_sweep = sweep(champ_pred, strong, weak, cost_weight)
    chall_sweep = sweep(chall_pred, strong, weak, cost_weight)

    def both(idx: np.ndarray) -> tuple[tuple[float, float | None, float, float], tuple[float, float | None, float, float]]:
        c = scorer.metrics(champ_sweep, idx, strong, weak, pgr, None)
        h = scorer.metrics(chall_sweep, idx, strong, weak, pgr, c[3])
        return c, h

    full = np.arange(len(test.prompts))
    champ_full, chall_full = both(full)
    diffs = []
    for chunk in resamples(len(full), n_boot, seed, chunk_cells=len(full) * 64):
        for idx in chunk:
            c, h = both(idx)
            diffs.append((h[0] - c[0], (h[1] - c[1]) if (h[1] is not None and c[1] is not None) else np.nan, h[2] - c[2]))
    draws = np.array(diffs)
    result = HeldoutComparison(
        n_prompts=len(full), models=test.models, n_boot=n_boot, seed=seed,
        aiq=_paired(champ_full[0], chall_full[0], draws[:, 0], level),
        apgr=_paired(champ_full[1], chall_full[1], draws[:, 1], level)
        if pgr and champ_full[1] is not None and chall_full[1] is not None else None,
        quality_at_matched_cost=_paired(champ_full[2], chall_full[2], draws[:, 2], level),
        matched_cost_usd=champ_full[3],
    )
    column = GATE_METRICS.index(gate_metric)
    if gate_metric == "apgr" and result.apgr is None:
        raise ValueError("APGR applies only to two models with the dearer one stronger: gate on aiq")
    alpha = alpha_family / rounds
    finite = draws[:, column][np.isfinite(draws[:, column])]
    lower = float(np.quantile(finite, alpha))
    estimate = [result.aiq, result.apgr, result.quality_at_matched_cost][column]
    assert estimate is not None
    passed = lower > 0
    reason = (f"{gate_metric} improves by {estimate.difference.estimate:+.4f}; its one-sided {1 - alpha:.2%} lower "
              f"bound {lower:+.4f} is {'above' if passed else 'not above'} zero "
              f"(alpha {alpha_family} split over {rounds} rounds, {n_boot} paired bootstrap draws on {len(full)} prompts)")
    gate = GateDecision(metric=gate_metric, alpha_family=alpha_family, rounds=rounds, alpha=alpha, lower_bound=lower,
                        passed=passed, reason=reason)
    return result, gate


def identity(path: Path, router: LearnedRouter) -> dict[str, str]:
    return {"path": str(path), "version": router.manifest.version}


def compare_offpolicy(champion: LearnedRouter, challenger: LearnedRouter, log: Sequence[LoggedRequest],
                      labels: Sequence[OutcomeRow], *, method: str = "dr", cost_weight: float | None = None,
                      n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> OffPolicyResult:
    """Each router's quality and cost at its served cost weight, estimated from logged traffic
    (IPS, or DR with each router's own predictions as the reward and cost models)."""
    if method not in ("ips", "dr"):
        raise ValueError(f"off-policy method must be ips or dr, not {method!r}")
    models = champion.manifest.models
    used, traffic = logged_traffic(log, labels, models)
    if not used:
        raise ValueError("no logged request has a propensity, a label of its served answer and a model the routers know")
    prompts = [r.prompt for r in used]
    prompt_tokens = np.array([r.prompt_tokens for r in used], dtype=float)

    def decide(router: LearnedRouter) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        order = [router.manifest.models.index(m) for m in models]
        pred = router.predict(prompts)
        quality = pred.quality[:, order]
        cost = expected_cost(prompt_tokens, pred.completion_tokens[:, order], models, router.manifest.prices)
        weight = router.manifest.default_cost_weight if cost_weight is None else cost_weight
        return choose_by_utility(quality, cost, weight, router.manifest.cost_scale_usd), quality, cost

    champ_pick, champ_q, champ_c = decide(champion)
    chall_pick, chall_q, chall_c = decide(challenger)
    dr = method == "dr"
    return estimate_pair(champ_pick, chall_pick, traffic, quality_model=(champ_q, chall_q) if dr else None,
                         cost_model=(champ_c, chall_c) if dr else None, level=level, n_boot=n_boot, seed=seed)


def compare(champion_dir: Path, challenger_dir: Path, heldout: Sequence[OutcomeRow], *,
            log: Sequence[LoggedRequest] | None = None, log_labels: Sequence[OutcomeRow] = (),
            offpolicy_method: str = "dr", n_boot: int = 2000, seed: int = 0, cost_weight: float | None = None,
            gate_metric: str = "aiq", alpha_family: float = 0.05, rounds: int = 6,
            folds: Sequence[tuple[Path, Sequence[str]]] = ()) -> CompareResult:
    """Everything `ttc router compare` reports (and `promote` gates on). With `folds` (fold
    artifacts and the prompts each left out), the held-out comparison is cross-fitted over
    `heldout` (compare_crossfit) instead of scoring `challenger_dir` itself on it."""
    champion = load_router(champion_dir, embedding_cache=True)
    challenger = load_router(challenger_dir, embedding_cache=True)
    if folds:
        fold_routers = [(load_router(path, embedding_cache=True), prompts) for path, prompts in folds]
        held, gate = compare_crossfit(champion, challenger, fold_routers, heldout, n_boot=n_boot, seed=seed,
                                      cost_weight=cost_weight, gate_metric=gate_metric, alpha_family=alpha_family,
                                      rounds=rounds)
    else:
        held, gate = compare_heldout(champion, challenger, heldout, n_boot=n_boot, seed=seed, cost_weight=cost_weight,
                                     gate_metric=gate_metric, alpha_family=alpha_family, rounds=rounds)
    offpolicy, note = None, None
    if log is not None:
        try:
            offpolicy = compare_offpolicy(champion, challenger, log, log_labels, method=offpolicy_method,
                                          cost_weight=cost_weight, n_boot=n_boot, seed=seed)
        except ValueError as exc:
            note = str(exc)
    return CompareResult(champion=identity(champion_dir, champion), challenger=identity(challenger_dir, challenger),
                         heldout=held, gate=gate, offpolicy=offpolicy, offpolicy_note=note)
