"""Cost-quality metrics for routers.

Definitions (all on one held-out set, averages per prompt):

* **Non-decreasing convex hull** of cost-quality points: the upper concave
  hull, kept up to its highest point and flat afterwards. Any point on it is
  reachable by randomly mixing two routing settings per request.
  R(c) = hull value at cost c; R(c) = 0 left of the cheapest point (that
  cost cannot be reached).
* **AIQ** (RouterBench): integral of R over cost normalized so the cheapest
  single model is 0 and the dearest is 1, i.e. the mean of R on [0, 1].
* **PGR(f)** (RouteLLM): (quality - q_weak) / (q_strong - q_weak) when a
  fraction f of prompts goes to the strong model. **APGR** is its integral
  over f in [0, 1]; **CPT(x)** is the smallest f whose PGR reaches x
  (a fraction, e.g. 0.25), linear between the curve's points.
* **match_best_cost_fraction**: smallest cost on R reaching the best single
  model's quality, divided by that model's cost (None when never reached).
* **quality_at_cheapest**: R at the cheapest single model's cost.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

_GRID = 200_001  # integration grid for AIQ; exact to ~1e-5 for piecewise-linear R


def nondecreasing_hull(costs: ArrayLike, qualities: ArrayLike) -> NDArray[np.float64]:
    """Vertices (k, 2) of the non-decreasing upper convex hull, sorted by cost."""
    pts = np.column_stack([np.asarray(costs, float), np.asarray(qualities, float)])
    if len(pts) == 0:
        raise ValueError("no points")
    # Sort by cost, then quality descending so equal-cost points keep the best.
    pts = pts[np.lexsort((-pts[:, 1], pts[:, 0]))]
    hull: list[NDArray[np.float64]] = []
    for p in pts:
        if hull and p[0] == hull[-1][0]:
            continue  # same cost, lower or equal quality
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            # Drop the middle point when it lies on or below the chord (not concave).
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) >= 0:
                hull.pop()
            else:
                break
        hull.append(p)
    out = np.array(hull)
    top = int(np.argmax(out[:, 1]))  # first index of the maximum quality
    return out[: top + 1]


def hull_value(hull: NDArray[np.float64], cost: NDArray[np.float64] | float) -> NDArray[np.float64]:
    """R(c): hull interpolation, 0 left of the first vertex, flat right of the last."""
    c = np.atleast_1d(np.asarray(cost, float))
    vals = np.interp(c, hull[:, 0], hull[:, 1], left=0.0, right=float(hull[-1, 1]))
    # Means of the same costs summed in a different order differ in the last
    # bits; a point "at" the cheapest model's cost must count as reachable there.
    x0 = float(hull[0, 0])
    tol = 1e-9 * max(abs(x0), float(np.max(np.abs(hull[:, 0])))) + 1e-15
    vals[(c >= x0 - tol) & (c < x0)] = float(hull[0, 1])
    vals[c < x0 - tol] = 0.0
    return vals


def aiq(costs: ArrayLike, qualities: ArrayLike, cost_min: float, cost_max: float) -> float:
    """Area under the non-decreasing hull on cost normalized to [cost_min, cost_max]."""
    if cost_max <= cost_min:
        raise ValueError("cost_max must exceed cost_min")
    norm = (np.asarray(costs, float) - cost_min) / (cost_max - cost_min)
    hull = nondecreasing_hull(norm, qualities)
    grid = np.linspace(0.0, 1.0, _GRID)
    return float(np.trapezoid(hull_value(hull, grid), grid))


def cost_to_reach(costs: ArrayLike, qualities: ArrayLike, target: float) -> float | None:
    """Smallest cost on the hull whose quality reaches `target`, or None."""
    hull = nondecreasing_hull(costs, qualities)
    if hull[-1, 1] < target - 1e-12:
        return None
    if hull[0, 1] >= target - 1e-12:
        return float(hull[0, 0])
    i = int(np.argmax(hull[:, 1] >= target - 1e-12))
    (x1, y1), (x2, y2) = hull[i - 1], hull[i]
    return float(x1 + (target - y1) * (x2 - x1) / (y2 - y1))


def match_best_cost_fraction(
    costs: ArrayLike, qualities: ArrayLike, best_quality: float, best_cost: float
) -> float | None:
    reach = cost_to_reach(costs, qualities, best_quality)
    return None if reach is None else max(reach, 0.0) / best_cost


def quality_at_cost(costs: ArrayLike, qualities: ArrayLike, cost: float) -> float:
    return float(hull_value(nondecreasing_hull(costs, qualities), cost)[0])


def pgr_curve(
    route_scores: ArrayLike, weak: ArrayLike, strong: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(strong-call fraction, PGR) of a threshold router over `route_scores`.

    Higher score = send to the strong model. Tied scores move together (a
    threshold cannot split them), so the curve has one point per tie group.
    """
    s = np.asarray(route_scores, float)
    w = np.asarray(weak, float)
    st = np.asarray(strong, float)
    n = len(s)
    q_weak, q_strong = w.mean(), st.mean()
    if q_strong == q_weak:
        raise ValueError("PGR is undefined when both models have the same quality")
    order = np.argsort(-s, kind="stable")
    gain = np.concatenate([[0.0], np.cumsum((st - w)[order])])
    sorted_s = s[order]
    # Keep k = 0, every tie-group end, and n.
    ends = np.flatnonzero(np.diff(sorted_s) != 0) + 1
    ks = np.unique(np.concatenate([[0], ends, [n]]))
    quality = q_weak + gain[ks] / n
    return ks / n, (quality - q_weak) / (q_strong - q_weak)


def apgr(fractions: ArrayLike, pgr: ArrayLike) -> float:
    return float(np.trapezoid(np.asarray(pgr, float), np.asarray(fractions, float)))


def cpt(fractions: ArrayLike, pgr: ArrayLike, target: float) -> float | None:
    """Smallest strong-call fraction whose PGR reaches `target` (linear between points)."""
    f = np.asarray(fractions, float)
    p = np.asarray(pgr, float)
    hits = np.flatnonzero(p >= target - 1e-12)
    if len(hits) == 0:
        return None
    i = int(hits[0])
    if i == 0:
        return float(f[0])
    return float(f[i - 1] + (target - p[i - 1]) * (f[i] - f[i - 1]) / (p[i] - p[i - 1]))


def single_model_points(quality: NDArray[np.float64], cost: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-model mean quality and mean cost from (n_prompts, n_models) matrices."""
    return quality.mean(axis=0), cost.mean(axis=0)


def best_single_index(qualities: Sequence[float], costs: Sequence[float]) -> int:
    """Highest quality; ties go to the cheaper model."""
    return int(min(range(len(qualities)), key=lambda i: (-qualities[i], costs[i])))
