"""Cold start: a quality prior for a configured model the router artifact does not know yet.

Until a model is onboarded from the probe set (`ttc router onboard`), the router has no
prediction for it. Its prior comes from the known models' predictions on the same prompt:

* with a declared tier, a quantile of them (`low`: the weakest known model's prediction,
  `mid`: the median, `high`: the strongest);
* without one, a line through (log expected cost, predicted quality) of the known models,
  evaluated at the new model's expected cost and clipped to the known range: a dearer model is
  assumed about as good as the known models of its price.

Such a candidate is flagged `onboarded: false`, and the gateway offers it to `auto` only where a
routing profile allows unonboarded models.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Tier = Literal["low", "mid", "high"]
TIER_QUANTILE: dict[str, float] = {"low": 0.0, "mid": 0.5, "high": 1.0}


def prior_quality(known_quality: np.ndarray, known_cost: np.ndarray, cost: float, tier: Tier | None) -> float:
    """Prior P(success) of an unknown model from the known models' predictions on this prompt."""
    q = np.asarray(known_quality, dtype=np.float64)
    if tier is not None:
        return float(np.quantile(q, TIER_QUANTILE[tier]))
    c = np.log(np.maximum(np.asarray(known_cost, dtype=np.float64), 1e-15))
    if len(q) < 2 or np.ptp(c) < 1e-9:
        return float(q.mean())
    slope, intercept = np.polyfit(c, q, 1)
    return float(np.clip(slope * np.log(max(cost, 1e-15)) + intercept, q.min(), q.max()))
