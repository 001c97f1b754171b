"""Off-policy estimates of a router's quality and cost from the gateway's logged traffic.

The gateway serves the router's pick, or with probability `explore_rate` a candidate drawn
uniformly, and logs the probability with which the served model was chosen (`propensity`).
A different router's expected reward on that traffic is then estimated without serving it:

* **IPS** (inverse propensity scoring): mean of 1[target picks the served model] * r / p.
  Unbiased when every model the target may pick had a positive chance of being served.
* **DR** (doubly robust): a reward model's prediction for the target's pick, corrected by the
  IPS-weighted residual of the served answer. Unbiased when either the propensities or the
  reward model are right, and of lower variance than IPS when the reward model is close.

Confidence intervals are percentile bootstrap intervals over logged requests. Comparing two
routers resamples the same requests for both (paired), so their shared noise cancels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel


@dataclass(frozen=True)
class LoggedTraffic:
    """Logged decisions, one entry per request, over a fixed list of models (column indices)."""

    served: np.ndarray  # (n,) int: index of the served model
    propensity: np.ndarray  # (n,) P(logging policy serves that model)
    reward: np.ndarray  # (n,) observed quality of the served answer in [0, 1]
    cost: np.ndarray  # (n,) observed USD of the served answer

    def __post_init__(self) -> None:
        n = len(self.served)
        if not (len(self.propensity) == len(self.reward) == len(self.cost) == n):
            raise ValueError("served, propensity, reward and cost must have one entry per request")
        if n and not (np.all(self.propensity > 0) and np.all(self.propensity <= 1)):
            raise ValueError("propensities must lie in (0, 1]")


class Interval(BaseModel):
    """A point estimate with its percentile bootstrap interval at `level`."""

    estimate: float
    low: float
    high: float
    level: float


class PolicyEstimate(BaseModel):
    quality: Interval
    cost_usd: Interval


class OffPolicyResult(BaseModel):
    """`method` is ips or dr; `n` requests used, `matched` how many the target would have served
    the same way (the ones IPS learns from)."""

    method: str
    n: int
    champion: PolicyEstimate
    challenger: PolicyEstimate
    quality_difference: Interval
    matched_champion: int
    matched_challenger: int


def contributions(target: np.ndarray, traffic: LoggedTraffic, outcome: np.ndarray,
                  model: np.ndarray | None = None) -> np.ndarray:
    """Per-request terms whose mean is the IPS (no `model`) or DR estimate of `outcome` under the
    deterministic policy `target` ((n,) model indices). `outcome` is what was observed for the
    served model ((n,)); `model` an (n, m) prediction of it for every model (DR only)."""
    rows = np.arange(len(target))
    weight = (target == traffic.served) / traffic.propensity
    if model is None:
        return weight * outcome
    return model[rows, target] + weight * (outcome - model[rows, traffic.served])


def resamples(n: int, n_boot: int, seed: int, chunk_cells: int = 4_000_000) -> list[np.ndarray]:
    """`n_boot` bootstrap index draws of size `n`, in (k, n) chunks small enough to hold in memory.
    The same seed gives the same draws: paired comparisons resample both sides identically."""
    rng = np.random.default_rng(seed)
    per_chunk = max(1, chunk_cells // max(n, 1))
    out, left = [], n_boot
    while left > 0:
        k = min(per_chunk, left)
        out.append(rng.integers(0, n, size=(k, n)))
        left -= k
    return out


def bootstrap_interval(terms: np.ndarray, *, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> Interval:
    """Mean of `terms` with a percentile bootstrap interval (rows resampled with replacement)."""
    if len(terms) == 0:
        raise ValueError("no logged requests to estimate from")
    means = np.concatenate([terms[idx].mean(axis=1) for idx in resamples(len(terms), n_boot, seed)])
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Interval(estimate=float(terms.mean()), low=float(low), high=float(high), level=level)


def estimate_pair(champion: np.ndarray, challenger: np.ndarray, traffic: LoggedTraffic, *,
                  quality_model: tuple[np.ndarray, np.ndarray] | None = None,
                  cost_model: tuple[np.ndarray, np.ndarray] | None = None,
                  level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> OffPolicyResult:
    """IPS (no models) or DR estimates of both routers' quality and cost, and of their quality
    difference (paired). The models are (champion's, challenger's) (n, m) predictions: each router
    corrects with its own predictions, so DR needs nothing beyond the two artifacts."""
    method = "ips" if quality_model is None else "dr"

    def policy(target: np.ndarray, which: int) -> tuple[np.ndarray, PolicyEstimate]:
        q_terms = contributions(target, traffic, traffic.reward, quality_model[which] if quality_model else None)
        c_terms = contributions(target, traffic, traffic.cost, cost_model[which] if cost_model else None)
        return q_terms, PolicyEstimate(quality=bootstrap_interval(q_terms, level=level, n_boot=n_boot, seed=seed),
                                       cost_usd=bootstrap_interval(c_terms, level=level, n_boot=n_boot, seed=seed))

    champ_terms, champ = policy(champion, 0)
    chall_terms, chall = policy(challenger, 1)
    diff = bootstrap_interval(chall_terms - champ_terms, level=level, n_boot=n_boot, seed=seed)
    return OffPolicyResult(method=method, n=len(champion), champion=champ, challenger=chall, quality_difference=diff,
                           matched_champion=int((champion == traffic.served).sum()),
                           matched_challenger=int((challenger == traffic.served).sum()))
