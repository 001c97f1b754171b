"""Money as the ledgers hold it: integer micro-dollars (floats only at the API's edge), so that
thousands of reserve/settle pairs never drift by rounding; and a budget window's limit."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .windows import WINDOWS, Window

MICRO = 1_000_000


def _finite(usd: float) -> float:
    if not math.isfinite(usd):
        raise ValueError(f"amount must be finite, got {usd!r}")
    return usd


def to_micro(usd: float) -> int:
    """Dollars -> integer micro-dollars (half-up)."""
    return round(_finite(usd) * MICRO)


def to_micro_ceil(usd: float) -> int:
    """Dollars -> integer micro-dollars, rounded up: a reservation is never smaller than asked.

    Rounding a hold half-up would leave it up to half a micro-dollar short of the worst case it
    was asked to cover; on cheap models (a few micro-dollars a call) a strategy then finds its
    own hold too small for the calls it planned. The 1e-6 slack absorbs float noise such as
    15.000000000002 micro-dollars."""
    return math.ceil(_finite(usd) * MICRO - 1e-6)


def from_micro(micro: int | float) -> float:
    return round(int(micro) / MICRO, 6)


@dataclass(frozen=True)
class WindowLimit:
    window: Window
    limit_usd: float

    def __post_init__(self) -> None:
        if self.window not in WINDOWS:
            raise ValueError(f"unknown window {self.window!r}; expected one of {', '.join(WINDOWS)}")
        if not self.limit_usd >= 0:
            raise ValueError(f"limit_usd must be >= 0, got {self.limit_usd!r}")
