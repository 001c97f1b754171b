"""The ledger contract shared by every backend.

Money is handled as integer micro-dollars inside the ledgers (floats only at this API's edge),
so that thousands of reserve/settle pairs never drift by rounding.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from .amounts import WindowLimit, from_micro, to_micro, to_micro_ceil
from .policy import Policy
from .windows import Window

log = logging.getLogger("gateway.ledger")

@dataclass(frozen=True)
class BudgetScope:
    """Who is spending, and the limits from config.

    Limits stored with ``Ledger.set_limits`` replace ``windows`` and
    ``max_cost_per_request_usd`` (both together) for the tenant; ``key_windows`` always come
    from config.
    """

    tenant_id: str
    windows: tuple[WindowLimit, ...] = ()
    max_cost_per_request_usd: float | None = None
    key_id: str | None = None
    key_windows: tuple[WindowLimit, ...] = ()

    def __post_init__(self) -> None:
        if not self.tenant_id:
            raise ValueError("tenant_id must be non-empty")
        for name, ws in (("windows", self.windows), ("key_windows", self.key_windows)):
            seen = [w.window for w in ws]
            if len(seen) != len(set(seen)):
                raise ValueError(f"duplicate window in {name}: {seen}")


@dataclass(frozen=True)
class Hold:
    """A live reservation. Pass it back to ``settle`` or ``release``.

    ``created_at`` fixes the calendar buckets the eventual charge lands in (see ``Ledger.settle``).
    ``enforced`` is False only for holds granted by the fail-open wrapper while the store was down.
    """

    reservation_id: str
    tenant_id: str
    amount_usd: float
    key_id: str | None = None
    created_at: float = 0.0
    expires_at: float = 0.0
    enforced: bool = True
    # Money left in the tightest window (tenant or key) right after this reservation; None if
    # the scope has no windows. Lets the gateway report the remaining budget without another
    # round trip: after settling, remaining ~= remaining_after_usd + amount_usd - actual.
    remaining_after_usd: float | None = None


class LedgerError(Exception):
    pass


class BudgetExceeded(LedgerError):
    def __init__(
        self,
        *,
        window: str,
        scope: Literal["tenant", "key", "request"],
        limit_usd: float,
        remaining_usd: float,
        requested_usd: float,
    ) -> None:
        self.window = window
        self.scope = scope
        self.limit_usd = limit_usd
        self.remaining_usd = remaining_usd
        self.requested_usd = requested_usd
        super().__init__(self._message())

    def _message(self) -> str:
        if self.scope == "request":
            return (
                f"Request would cost up to ${self.requested_usd:.6f}, above the per-request limit "
                f"of ${self.limit_usd:.6f}."
            )
        who = "tenant" if self.scope == "tenant" else "API key"
        return (
            f"Budget exceeded: the {who}'s {self.window} budget of ${self.limit_usd:.6f} has "
            f"${self.remaining_usd:.6f} remaining, and this request needs up to ${self.requested_usd:.6f}."
        )


class RateLimitExceeded(LedgerError):
    def __init__(self, *, limit: Literal["rpm", "tpm"], retry_after_s: float, detail: str = "") -> None:
        self.limit = limit
        self.retry_after_s = retry_after_s
        msg = f"Rate limit exceeded ({limit}); retry after {retry_after_s:.1f}s."
        super().__init__(f"{msg} {detail}".strip())


class LedgerUnavailable(LedgerError):
    """The store did not answer (in time). ``maybe_applied`` says whether the operation may
    still have taken effect there (its command was sent, or it was cut off mid-way): a reserve
    that failed that way may have left a hold nobody owns, which the spool then cancels by id."""

    def __init__(self, message: str = "budget ledger unavailable", *, maybe_applied: bool = True) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied


def new_reservation_id() -> str:
    """Client-generated, so that every operation on a hold can be retried or replayed safely."""
    return os.urandom(16).hex()  # as unique as uuid4, without building a UUID object


class WindowUsage(BaseModel):
    window: Window
    limit_usd: float
    spent_usd: float
    reserved_usd: float
    remaining_usd: float


class TenantUsage(BaseModel):
    """Admin API shape. ``tenant``/``windows``/``requests`` are relied on by external scripts;
    ``key_id``/``key_windows`` are filled only when the scope names an API key."""

    tenant: str
    windows: list[WindowUsage]
    requests: int
    key_id: str | None = None
    key_windows: list[WindowUsage] = []


def window_usage(window: Window, limit: int, spent: int, reserved: int) -> WindowUsage:
    return WindowUsage(
        window=window,
        limit_usd=from_micro(limit),
        spent_usd=from_micro(spent),
        reserved_usd=from_micro(reserved),
        remaining_usd=from_micro(max(0, limit - spent - reserved)),
    )


def tightest(usage: TenantUsage) -> float | None:
    rems = [w.remaining_usd for w in (*usage.windows, *usage.key_windows)]
    return min(rems) if rems else None


class Ledger(ABC):
    """Budget reservations and RPM/TPM limits shared by every gateway replica.

    Semantics common to all backends:

    * ``reserve`` checks, in one atomic step, every tenant window and every key window:
      ``spent + live reservations + amount <= limit``, and ``amount <= max_cost_per_request``;
      then reserves ``amount`` in all of them. All or nothing.
    * A reservation expires ``ttl_s`` after it was made (default ``reservation_ttl_s``). An expired
      reservation stops counting as reserved and, with ``expired_holds: charge`` (the default), is
      charged its full amount: its gateway crashed or lost the store mid-call, and the upstream
      may have billed the call. Spend then never falls below what was billed, and never passes
      the limit (the amount fitted when it was reserved). A later settle for the same hold
      corrects that charge to the actual cost, a later release refunds it (both once, within
      ``closed_retention_s``). With ``expired_holds: refund`` the money returns to the window.
    * ``settle`` charges the actual cost to the calendar buckets that were current **when the
      reservation was made** (``hold.created_at``). Reservation and charge therefore hit the same
      bucket, which keeps ``spent <= limit`` per bucket even when a request straddles midnight.
    """

    @abstractmethod
    async def reserve(
        self, scope: BudgetScope, amount_usd: float, *, ttl_s: float | None = None, reservation_id: str | None = None
    ) -> Hold:
        """Atomically check all windows and reserve. Raises BudgetExceeded / LedgerUnavailable.

        ``reservation_id`` (default: a new one) lets the caller cancel a reserve whose outcome it
        never learned: a ``release`` of that id drops the hold, or, arriving first, keeps the
        reserve from ever taking effect.
        """

    @abstractmethod
    async def settle(self, hold: Hold, actual_usd: float) -> float:
        """Charge ``actual_usd``, drop the reservation, count one settled request.

        The charge may exceed the hold (tokenizer mismatch): it is charged in full and the
        overage is logged as a warning. A hold that already expired is still charged the actual
        cost: its worst-case expiry charge is corrected to it, or, if the store no longer knows
        the hold at all (refund mode, or a store that lost it in a crash), it is charged as a
        standalone charge to the buckets of ``hold.created_at``. Idempotent: returns the amount
        this hold is charged, the first time; a second settle (or a settle after ``release``)
        changes nothing and returns 0.0.
        """

    @abstractmethod
    async def release(self, hold: Hold) -> None:
        """Drop the reservation without charging (refunding an expiry charge, if it had one).
        Idempotent; a no-op after settle. Releasing an id the store has not seen yet keeps a
        reserve with that id from taking effect later."""

    async def start(self) -> None:
        """Start background work (a wrapper's spool replay); the runtime calls it once."""

    @abstractmethod
    async def usage(self, scope: BudgetScope) -> TenantUsage:
        """Spend and live reservations per effective window, for the current buckets."""

    async def remaining_usd(self, scope: BudgetScope) -> float | None:
        """Remaining money in the tightest window (tenant and key); None if no windows."""
        return tightest(await self.usage(scope))

    @abstractmethod
    async def set_limits(
        self,
        tenant_id: str,
        windows: Sequence[WindowLimit],
        max_cost_per_request_usd: float | None,
    ) -> None:
        """Store tenant limits in the ledger; they replace the config's ``windows`` and
        ``max_cost_per_request_usd`` (None = no per-request cap) for every replica at once."""

    @abstractmethod
    async def clear_limits(self, tenant_id: str) -> None:
        """Forget stored limits; the tenant falls back to its config limits."""

    @abstractmethod
    async def stored_limits(self, tenant_id: str) -> Policy | None:
        """The limits stored by ``set_limits`` (integer micro-dollars), or None: config applies."""

    @abstractmethod
    async def admit_request(
        self, tenant_id: str, *, rpm: int | None, tpm: int | None, estimated_tokens: int
    ) -> None:
        """Count one request and ``estimated_tokens`` against the tenant's RPM/TPM limits.

        Sliding 60-second window (an exact log of admissions, not fixed minute buckets), shared
        by all replicas through the store. Raises RateLimitExceeded with the seconds until enough
        of the window has slid out. A single request whose estimate exceeds ``tpm`` is rejected
        with retry_after 60s (it can never fit).
        """

    @abstractmethod
    async def record_tokens(
        self, tenant_id: str, *, tpm: int | None, tokens: int, estimated_tokens: int = 0
    ) -> None:
        """True up TPM with actual usage: records ``tokens - estimated_tokens`` (may be negative,
        a refund) in the sliding window. Pass the ``estimated_tokens`` given to ``admit_request``;
        no-op when ``tpm`` is None or the delta is 0."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise LedgerUnavailable if the store cannot be reached."""

    @abstractmethod
    async def close(self) -> None: ...


def check_ttl(ttl_s: float) -> float:
    if not ttl_s > 0:
        raise ValueError(f"ttl_s must be > 0, got {ttl_s!r}")
    return ttl_s


def check_amount(amount_usd: float, *, round_up: bool = False) -> int:
    micro = to_micro_ceil(amount_usd) if round_up else to_micro(amount_usd)
    if micro < 0:
        raise ValueError(f"amount must be >= 0, got {amount_usd!r}")
    return micro


def log_overage(hold: Hold, charged_micro: int, status: str) -> None:
    held = to_micro(hold.amount_usd)
    if charged_micro > held:
        log.warning(
            "ledger overage: tenant=%s reservation=%s held $%.6f but charged $%.6f (+$%.6f); "
            "the upstream reported more usage than reserved",
            hold.tenant_id,
            hold.reservation_id,
            from_micro(held),
            from_micro(charged_micro),
            from_micro(charged_micro - held),
        )
    if status == "late":
        log.warning(
            "ledger: tenant=%s reservation=%s settled after its TTL expired, unknown to the store; "
            "charged $%.6f as a standalone charge",
            hold.tenant_id,
            hold.reservation_id,
            from_micro(charged_micro),
        )
    elif status == "corrected":
        log.warning(
            "ledger: tenant=%s reservation=%s settled after its TTL expired; its worst-case charge "
            "of $%.6f corrected to $%.6f",
            hold.tenant_id,
            hold.reservation_id,
            from_micro(held),
            from_micro(charged_micro),
        )
