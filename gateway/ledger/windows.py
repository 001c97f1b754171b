"""Calendar window arithmetic in UTC.

Every budget window is a calendar bucket: the minute, hour, day, ISO week (Monday 00:00 UTC),
or month that contains a timestamp, or the single ``total`` bucket that never resets. Both
backends derive bucket ids here, so they agree on boundaries by construction.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Final, Literal, get_args

Window = Literal["minute", "hour", "day", "week", "month", "total"]
WINDOWS: Final[tuple[Window, ...]] = get_args(Window)


def bucket(window: Window, now: float) -> tuple[str, float | None]:
    """Return ``(bucket_id, end_epoch_s)`` of the ``window`` bucket containing ``now``.

    ``end`` is ``None`` for ``total``. Bucket ids are stable strings such as ``day:20261123``;
    they become part of storage keys, so their format must never change.
    """
    t = datetime.fromtimestamp(now, tz=timezone.utc)
    if window == "minute":
        start = t.replace(second=0, microsecond=0)
        return f"minute:{start:%Y%m%d%H%M}", (start + timedelta(minutes=1)).timestamp()
    if window == "hour":
        start = t.replace(minute=0, second=0, microsecond=0)
        return f"hour:{start:%Y%m%d%H}", (start + timedelta(hours=1)).timestamp()
    if window == "day":
        start = t.replace(hour=0, minute=0, second=0, microsecond=0)
        return f"day:{start:%Y%m%d}", (start + timedelta(days=1)).timestamp()
    if window == "week":
        day = t.replace(hour=0, minute=0, second=0, microsecond=0)
        start = day - timedelta(days=day.weekday())
        return f"week:{start:%Y%m%d}", (start + timedelta(days=7)).timestamp()
    if window == "month":
        start = t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        nxt = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
        return f"month:{start:%Y%m}", nxt.timestamp()
    if window == "total":
        return "total", None
    raise ValueError(f"unknown window {window!r}")


def window_length_s(window: Window) -> float:
    """Nominal length, used only to decide how long a finished bucket stays readable."""
    return {
        "minute": 60.0,
        "hour": 3600.0,
        "day": 86400.0,
        "week": 7 * 86400.0,
        "month": 31 * 86400.0,
        "total": 0.0,
    }[window]


def all_buckets(now: float) -> dict[Window, tuple[str, float | None]]:
    """Buckets of every window type containing ``now`` (do not mutate the returned dict)."""
    # Every boundary is a whole UTC minute, so all buckets are fixed within one minute:
    # cache per minute rather than redo the datetime arithmetic on every ledger call.
    return _buckets_of_minute(int(now // 60))


@lru_cache(maxsize=64)
def _buckets_of_minute(minute: int) -> dict[Window, tuple[str, float | None]]:
    return {w: bucket(w, minute * 60.0) for w in WINDOWS}
