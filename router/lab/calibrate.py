"""Pick the cost weight that hits a target on a sample of prompts (RouteLLM-style).

Targets: a share of calls to one model (RouteLLM calibrates the strong-model
share) or an average expected cost. The returned tuple carries the value the
sample actually reaches, since a discrete set of prompts rarely hits a target
exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from router.api import LearnedRouter
from router.lab.train import expected_cost
from router.policy import choose_by_utility, cost_weight_grid


class CalibrationResult(BaseModel):
    cost_weight: float
    target: str
    target_value: float
    sample_value: float
    sample_size: int
    shares: dict[str, float]
    mean_expected_cost_usd: float


def calibrate_for_share(quality: np.ndarray, cost: np.ndarray, cost_scale: float, model: int, share: float) -> tuple[float, float]:
    """Cost weight whose share of `model` on the sample is closest to `share` (ties: larger share)."""
    best: tuple[float, float, float] | None = None
    for w in cost_weight_grid(quality, cost, cost_scale, size=800):
        s = float((choose_by_utility(quality, cost, float(w), cost_scale) == model).mean())
        key = abs(s - share)
        if best is None or key < best[0] - 1e-12:
            best = (key, float(w), s)
    assert best is not None
    return best[1], best[2]


def calibrate_for_cost(quality: np.ndarray, cost: np.ndarray, cost_scale: float, target: float) -> tuple[float, float]:
    """Smallest cost weight whose mean expected cost on the sample is <= target."""
    rows = np.arange(len(quality))
    grid = cost_weight_grid(quality, cost, cost_scale, size=800)
    for w in grid:
        c = float(cost[rows, choose_by_utility(quality, cost, float(w), cost_scale)].mean())
        if c <= target + 1e-15:
            return float(w), c
    w = float(grid[-1])
    return w, float(cost[rows, choose_by_utility(quality, cost, w, cost_scale)].mean())


def calibrate(
    router: LearnedRouter,
    prompts: Sequence[str],
    *,
    prompt_tokens: Sequence[int] | None = None,
    strong_model: str | None = None,
    strong_share: float | None = None,
    target_cost_usd: float | None = None,
) -> CalibrationResult:
    """Exactly one of (`strong_share`) or (`target_cost_usd`) must be given."""
    if (strong_share is None) == (target_cost_usd is None):
        raise ValueError("give exactly one of strong_share or target_cost_usd")
    m = router.manifest
    pred = router.predict(list(prompts))
    if prompt_tokens is None:
        from router.tokens import count_tokens

        prompt_tokens = [count_tokens(p) for p in prompts]
    cost = expected_cost(np.asarray(prompt_tokens, float), pred.completion_tokens, router.models, m.prices)
    if strong_share is not None:
        name = strong_model or max(router.models, key=lambda k: m.prices[k].input_per_1m + m.prices[k].output_per_1m)
        if name not in router.models:
            raise ValueError(f"{name!r} is not one of the router's models {router.models}")
        w, value = calibrate_for_share(pred.quality, cost, m.cost_scale_usd, router.models.index(name), strong_share)
        target, target_value = f"share:{name}", strong_share
    else:
        assert target_cost_usd is not None
        w, value = calibrate_for_cost(pred.quality, cost, m.cost_scale_usd, target_cost_usd)
        target, target_value = "mean_cost_usd", target_cost_usd
    choice = choose_by_utility(pred.quality, cost, w, m.cost_scale_usd)
    rows = np.arange(len(choice))
    shares = {name: float((choice == j).mean()) for j, name in enumerate(router.models)}
    return CalibrationResult(cost_weight=w, target=target, target_value=target_value, sample_value=value,
                             sample_size=len(prompts), shares=shares,
                             mean_expected_cost_usd=float(cost[rows, choice].mean()))


def load_prompts(path: Path) -> list[str]:
    """Prompts from a JSONL file of outcome rows or of {"prompt": ...} objects (deduplicated)."""
    import json

    seen: dict[str, None] = {}
    with Path(path).open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                seen.setdefault(json.loads(line)["prompt"], None)
    return list(seen)
