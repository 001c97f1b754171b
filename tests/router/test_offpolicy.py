"""Off-policy estimates on a synthetic log whose propensities and true rewards are known."""

from __future__ import annotations

import numpy as np
import pytest

from router.lab.offpolicy import LoggedTraffic, bootstrap_interval, estimate_pair


def synthetic_log(n: int, seed: int, explore_rate: float = 0.2) -> tuple[LoggedTraffic, np.ndarray, np.ndarray, np.ndarray]:
    """The gateway's logging policy (router pick, or with `explore_rate` a uniform draw, logged
    with its propensity) over 3 models whose success probabilities depend on the context."""
    rng = np.random.default_rng(seed)
    context = rng.uniform(size=n)
    p_true = np.column_stack([0.3 + 0.5 * context, 0.8 - 0.5 * context, np.full(n, 0.55)])
    cost = np.array([1.0, 2.0, 4.0])
    logging_pick = (context > 0.5).astype(int)  # a so-so router: model 0 on hard-looking, 1 else
    explored = rng.uniform(size=n) < explore_rate
    served = np.where(explored, rng.integers(0, 3, size=n), logging_pick)
    propensity = (1 - explore_rate) * (served == logging_pick) + explore_rate / 3
    reward = (rng.uniform(size=n) < p_true[np.arange(n), served]).astype(float)
    traffic = LoggedTraffic(served=served, propensity=propensity, reward=reward, cost=cost[served])
    return traffic, p_true, cost, context


@pytest.mark.parametrize("method", ["ips", "dr"])
def test_estimates_recover_the_true_value_within_their_interval(method: str) -> None:
    traffic, p_true, cost, context = synthetic_log(20_000, seed=7)
    n = len(context)
    rows = np.arange(n)
    best = np.argmax(p_true, axis=1)  # the ideal router: never the logging policy's pick on most rows
    cheapest = np.zeros(n, dtype=int)
    # A reward model that is wrong by a constant: DR must still be unbiased (propensities are right).
    model = (np.clip(p_true + 0.1, 0, 1), np.clip(p_true + 0.1, 0, 1)) if method == "dr" else None
    cost_model = (np.tile(cost, (n, 1)),) * 2 if method == "dr" else None
    result = estimate_pair(cheapest, best, traffic, quality_model=model, cost_model=cost_model, n_boot=500)
    truth_best, truth_cheap = p_true[rows, best].mean(), p_true[rows, cheapest].mean()
    for estimate, truth in ((result.challenger.quality, truth_best), (result.champion.quality, truth_cheap)):
        assert estimate.low <= truth <= estimate.high, (estimate, truth)
        assert estimate.high - estimate.low < 0.1  # informative, not a vacuous interval
    diff = result.quality_difference
    assert diff.low <= truth_best - truth_cheap <= diff.high
    assert diff.low > 0  # the ideal router is detectably better than always-cheapest
    assert result.challenger.cost_usd.low <= cost[best].mean() <= result.challenger.cost_usd.high
    assert result.method == method


def test_a_biased_estimate_falls_outside_the_interval() -> None:
    """The check above can fail: the same estimate with the logged propensities replaced by 1
    misses the truth of a policy that differs from the logging one."""
    traffic, p_true, _, context = synthetic_log(20_000, seed=3)
    rows = np.arange(len(context))
    target = np.argmax(p_true, axis=1)
    naive = (target == traffic.served) * traffic.reward
    interval = bootstrap_interval(naive, n_boot=500)
    assert not interval.low <= p_true[rows, target].mean() <= interval.high


def test_traffic_rejects_impossible_propensities() -> None:
    with pytest.raises(ValueError, match="propensities"):
        LoggedTraffic(served=np.array([0]), propensity=np.array([0.0]), reward=np.array([1.0]), cost=np.array([1.0]))
