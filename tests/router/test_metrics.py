"""Metrics on toy cases computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from router.lab import metrics


def test_hull_drops_dominated_and_flattens_after_max() -> None:
    # (0.5, 0.4) lies below the chord from (0, 0.5) to (1, 0.9); (1.5, 0.8) is past the max.
    hull = metrics.nondecreasing_hull([0.0, 0.5, 1.0, 1.5], [0.5, 0.6, 0.9, 0.8])
    assert hull.tolist() == [[0.0, 0.5], [1.0, 0.9]]


def test_aiq_two_single_models_is_trapezoid() -> None:
    # Cheapest at cost 1 quality 0.6, dearest at cost 3 quality 0.9:
    # normalized to [0, 1], area = (0.6 + 0.9) / 2 = 0.75.
    assert metrics.aiq([1.0, 3.0], [0.6, 0.9], 1.0, 3.0) == pytest.approx(0.75, abs=1e-6)


def test_aiq_concave_point_adds_area() -> None:
    # Extra point at normalized cost 0.5 quality 0.85: two trapezoids
    # 0.5 * (0.6 + 0.85) / 2 + 0.5 * (0.85 + 0.9) / 2 = 0.3625 + 0.4375 = 0.8.
    assert metrics.aiq([1.0, 2.0, 3.0], [0.6, 0.85, 0.9], 1.0, 3.0) == pytest.approx(0.8, abs=1e-6)


def test_aiq_unreachable_left_part_counts_zero_and_right_is_flat() -> None:
    # One point at normalized cost 0.5, quality 0.8: area = 0.5 * 0.8 = 0.4.
    assert metrics.aiq([2.0], [0.8], 1.0, 3.0) == pytest.approx(0.4, abs=1e-4)


def test_pgr_curve_apgr_and_cpt_by_hand() -> None:
    # 4 prompts. weak right on 0,1; strong right on 0,1,2,3. q_weak=0.5, q_strong=1.
    weak = np.array([1, 1, 0, 0])
    strong = np.array([1, 1, 1, 1])
    # Router ranks prompt 2 first, then 3, then 0, 1: perfect.
    frac, pgr = metrics.pgr_curve([0.1, 0.2, 0.9, 0.8], weak, strong)
    assert frac.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert pgr.tolist() == [0.0, 0.5, 1.0, 1.0, 1.0]
    # Area: 0.25*(0+0.5)/2 + 0.25*(0.5+1)/2 + 0.5*1 = 0.0625 + 0.1875 + 0.5 = 0.75
    assert metrics.apgr(frac, pgr) == pytest.approx(0.75)
    assert metrics.cpt(frac, pgr, 0.5) == pytest.approx(0.25)
    # PGR 0.8 is reached between f=0.25 (0.5) and f=0.5 (1.0): 0.25 + 0.3/0.5*0.25 = 0.4
    assert metrics.cpt(frac, pgr, 0.8) == pytest.approx(0.4)


def test_pgr_ties_move_together() -> None:
    frac, pgr = metrics.pgr_curve([1.0, 1.0, 0.0, 0.0], [0, 1, 0, 1], [1, 1, 1, 1])
    assert frac.tolist() == [0.0, 0.5, 1.0]
    assert pgr.tolist() == [0.0, 0.5, 1.0]


def test_cpt_none_when_never_reached() -> None:
    assert metrics.cpt([0.0, 1.0], [0.0, 0.4], 0.5) is None


def test_match_best_cost_fraction_interpolates_on_hull() -> None:
    # Best single: quality 0.9 at cost 4. Router points (1, 0.6), (2, 0.95).
    # Quality 0.9 is reached on the segment at cost 1 + (0.3/0.35) * 1 = 1.857...
    frac = metrics.match_best_cost_fraction([1.0, 2.0], [0.6, 0.95], 0.9, 4.0)
    assert frac == pytest.approx((1 + 0.3 / 0.35) / 4)
    assert metrics.match_best_cost_fraction([1.0, 2.0], [0.6, 0.8], 0.9, 4.0) is None


def test_quality_at_cheapest() -> None:
    # Hull from (1, 0.6) to (3, 0.9); cheapest single costs 2 -> 0.75.
    assert metrics.quality_at_cost([1.0, 3.0], [0.6, 0.9], 2.0) == pytest.approx(0.75)
    assert metrics.quality_at_cost([1.5, 3.0], [0.6, 0.9], 1.0) == 0.0


def test_best_single_prefers_cheaper_on_ties() -> None:
    assert metrics.best_single_index([0.8, 0.8, 0.7], [2.0, 1.0, 0.5]) == 1
