"""How a router's routings score on labelled prompts: its predictions and cost-weight sweep,
and the AIQ, APGR and quality at a given cost those routings reach on the recorded outcomes.
router.lab.compare bootstraps these scores for two routers at once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from contracts.outcomes import OutcomeRow
from router.api import LearnedRouter
from router.lab import metrics
from router.lab.matrix import OutcomeMatrix, build_matrix
from router.lab.outcomes import prompt_key
from router.lab.train import expected_cost
from router.policy import choose_by_utility, cost_weight_grid


def exact_aiq(costs: np.ndarray, quals: np.ndarray, cost_min: float, cost_max: float) -> float:
    """metrics.aiq integrated exactly (the hull is piecewise linear): thousands of bootstrap draws
    cannot each afford a 200k-point grid."""
    norm = (np.asarray(costs, float) - cost_min) / (cost_max - cost_min)
    hull = metrics.nondecreasing_hull(norm, quals)
    x0 = float(hull[0, 0])
    if x0 >= 1.0:
        return 0.0
    start = max(x0, 0.0)
    inner = hull[(hull[:, 0] > start) & (hull[:, 0] < 1.0), 0]
    xs = np.concatenate([[start], inner, [1.0]])
    ys = metrics.hull_value(hull, xs)
    ys[0] = float(np.interp(start, hull[:, 0], hull[:, 1]))  # the hull's own value, not the 0 left of it
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2.0))


@dataclass
class RoutedSweep:
    """A router's distinct routings of the held-out prompts over its cost-weight sweep."""

    choices: np.ndarray  # (k, n) model index per prompt, one row per distinct routing
    default: np.ndarray  # (n,) the routing at the served cost weight
    gain: np.ndarray  # (n,) predicted quality gain of strong over weak (PGR's threshold score); 2 models only


@dataclass
class PredictedRouting:
    """What a router predicts for the held-out prompts (columns in the test's model order), and
    how it trades quality for cost."""

    quality: np.ndarray  # (n, m)
    cost: np.ndarray  # (n, m) expected USD
    cost_scale_usd: float
    default_cost_weight: float


def predicted(router: LearnedRouter, test: OutcomeMatrix, idx: np.ndarray | None = None) -> PredictedRouting:
    """`router`'s predictions for the test prompts (or those at `idx`)."""
    manifest = router.manifest
    at = np.arange(len(test.prompts)) if idx is None else idx
    order = [manifest.models.index(m) for m in test.models]
    pred = router.predict_features(router.featurizer.transform([test.prompts[i] for i in at]))
    cost = expected_cost(test.prompt_tokens[at], pred.completion_tokens[:, order], test.models, manifest.prices)
    return PredictedRouting(quality=pred.quality[:, order], cost=cost, cost_scale_usd=manifest.cost_scale_usd,
                            default_cost_weight=manifest.default_cost_weight)


def sweep(pred: PredictedRouting, strong: int, weak: int, cost_weight: float | None) -> RoutedSweep:
    quality, cost, scale = pred.quality, pred.cost, pred.cost_scale_usd
    grid = cost_weight_grid(quality, cost, scale)
    choices = np.unique(np.stack([choose_by_utility(quality, cost, float(w), scale) for w in grid]), axis=0)
    weight = pred.default_cost_weight if cost_weight is None else cost_weight
    default = choose_by_utility(quality, cost, weight, scale)
    gain = quality[:, strong] - quality[:, weak] if weak >= 0 else np.zeros(len(quality))
    return RoutedSweep(choices=choices, default=default, gain=gain)


class Scorer:
    """Scores routings on a (re)sampled set of prompts: realized cost and quality per prompt."""

    def __init__(self, test: OutcomeMatrix) -> None:
        self.score, self.cost = test.score, test.cost
        mean_cost = test.cost.mean(axis=0)
        self.cheap, self.dear = int(np.argmin(mean_cost)), int(np.argmax(mean_cost))

    def metrics(self, routed: RoutedSweep, idx: np.ndarray, strong: int, weak: int, pgr: bool,
                matched_cost: float | None) -> tuple[float, float | None, float, float]:
        """(aiq, apgr, quality at matched cost, cost of the default routing) on prompts `idx`."""
        rows = idx[None, :]
        picked = routed.choices[:, idx]
        costs = self.cost[rows, picked].mean(axis=1)
        quals = self.score[rows, picked].mean(axis=1)
        singles = self.cost[idx].mean(axis=0)
        aiq = exact_aiq(costs, quals, float(singles[self.cheap]), float(singles[self.dear]))
        apgr = None
        if pgr:
            w, s = self.score[idx, weak], self.score[idx, strong]
            if s.mean() != w.mean():
                fractions, curve = metrics.pgr_curve(routed.gain[idx], w, s)
                apgr = metrics.apgr(fractions, curve)
        default_cost = float(self.cost[idx, routed.default[idx]].mean())
        target = default_cost if matched_cost is None else matched_cost
        at_cost = metrics.quality_at_cost(costs, quals, target)
        return aiq, apgr, at_cost, default_cost


def mean_labels(rows: Sequence[OutcomeRow]) -> list[OutcomeRow]:
    """One row per (prompt, model) scored with the mean of its labels (token counts and cost too).
    Traffic repeats prompts, and each repeat is judged anew: averaging the judgments makes one test
    case with a less noisy label, where keeping one of them would throw the others away."""
    cells: dict[tuple[str, str], list[OutcomeRow]] = {}
    for row in rows:
        cells.setdefault((prompt_key(row.prompt), row.model), []).append(row)

    def mean(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return sum(known) / len(known) if known else None

    out = []
    for labels in cells.values():
        if len(labels) == 1:
            out.append(labels[0])
            continue
        tokens = mean([r.completion_tokens for r in labels])
        prompt_tokens = mean([r.prompt_tokens for r in labels])
        out.append(labels[-1].model_copy(update={
            "score": sum(r.score for r in labels) / len(labels), "cost_usd": mean([r.cost_usd for r in labels]),
            "completion_tokens": None if tokens is None else round(tokens),
            "prompt_tokens": None if prompt_tokens is None else round(prompt_tokens)}))
    return out


def served_metrics(router: LearnedRouter, rows: Sequence[OutcomeRow], cost_weight: float | None = None) -> dict[str, float | None]:
    """One router's AIQ, APGR (where defined) and default-point cost and quality on complete rows."""
    test = build_matrix(rows, router.manifest.models, router.manifest.prices)
    if not test.complete:
        raise ValueError("every prompt needs an outcome for every model the router covers")
    scorer = Scorer(test)
    two = len(test.models) == 2
    strong, weak = scorer.dear, (1 - scorer.dear if two else -1)
    pgr = bool(two and test.score[:, strong].mean() > test.score[:, weak].mean())
    routed = sweep(predicted(router, test), strong, weak, cost_weight)
    idx = np.arange(len(test.prompts))
    aiq, apgr, _, cost = scorer.metrics(routed, idx, strong, weak, pgr, None)
    quality = float(test.score[idx, routed.default].mean())
    return {"aiq": aiq, "apgr": apgr, "default_cost_usd": cost, "default_quality": quality}
