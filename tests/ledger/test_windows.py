"""Calendar bucket arithmetic (UTC) shared by both backends."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from gateway.ledger.windows import WINDOWS, all_buckets, bucket


def ts(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> float:
    return datetime(y, mo, d, h, mi, s, tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize(
    ("window", "when", "bucket_id", "end"),
    [
        ("minute", ts(2027, 1, 13, 12, 34, 56), "minute:202701131234", ts(2027, 1, 13, 12, 35)),
        ("hour", ts(2027, 1, 13, 23, 59, 59), "hour:2027011323", ts(2027, 1, 14)),
        ("day", ts(2028, 2, 28, 23, 0), "day:20280228", ts(2028, 2, 29)),  # leap year
        ("week", ts(2027, 1, 1, 8), "week:20261228", ts(2027, 1, 4)),  # ISO week spans New Year
        ("week", ts(2027, 1, 4), "week:20270104", ts(2027, 1, 11)),  # Monday 00:00 starts a week
        ("month", ts(2027, 12, 31, 23, 59, 59), "month:202712", ts(2028, 1, 1)),
        ("month", ts(2028, 2, 10), "month:202802", ts(2028, 3, 1)),
        ("total", ts(2027, 5, 5), "total", None),
    ],
)
def test_bucket(window: str, when: float, bucket_id: str, end: float | None) -> None:
    assert bucket(window, when) == (bucket_id, end)  # type: ignore[arg-type]


def test_bucket_boundaries_are_half_open() -> None:
    end = ts(2027, 1, 14)
    assert bucket("day", end - 0.001)[0] == "day:20270113"
    assert bucket("day", end)[0] == "day:20270114"


def test_all_buckets_cache_matches_direct_computation() -> None:
    for when in (ts(2027, 1, 13, 12, 0, 59) + 0.999, ts(2027, 12, 31, 23, 59, 30), ts(2027, 3, 1)):
        assert all_buckets(when) == {w: bucket(w, when) for w in WINDOWS}
