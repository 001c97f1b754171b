"""Encoding of limits and storage names shared by the backends.

A *policy* is the tenant-level limit set: an optional per-request cap plus windows. It travels
to the Redis scripts (and into storage, for ``set_limits``) as the compact string
``"<cap>;<window>=<limit>,..."`` in integer micro-dollars, ``cap = -1`` meaning no cap.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote

from .amounts import WindowLimit, to_micro
from .windows import WINDOWS, Window


@dataclass(frozen=True)
class Policy:
    cap: int | None  # micro-dollars
    windows: tuple[tuple[Window, int], ...]  # (window, limit micro-dollars)


def policy_from(windows: Iterable[WindowLimit], cap_usd: float | None) -> Policy:
    return Policy(
        cap=None if cap_usd is None else to_micro(cap_usd),
        windows=tuple((w.window, to_micro(w.limit_usd)) for w in windows),
    )


def encode_windows(windows: Sequence[tuple[Window, int]]) -> str:
    return ",".join(f"{w}={limit}" for w, limit in windows)


def encode_policy(p: Policy) -> str:
    return f"{-1 if p.cap is None else p.cap};{encode_windows(p.windows)}"


def decode_policy(s: str) -> Policy:
    cap_s, _, ws = s.partition(";")
    windows: list[tuple[Window, int]] = []
    for part in filter(None, ws.split(",")):
        name, _, limit = part.partition("=")
        if name not in WINDOWS:
            raise ValueError(f"corrupt stored policy {s!r}")
        windows.append((name, int(limit)))
    cap = int(cap_s)
    return Policy(cap=None if cap < 0 else cap, windows=tuple(windows))


@lru_cache(maxsize=65536)  # the same few tenant/key ids, on every ledger call
def escape(part: str) -> str:
    """Make a tenant or key id safe inside storage names.

    Percent-encoding removes ``{``/``}`` (which would break Redis Cluster hash tags), ``:`` and
    ``|`` (our separators), so two different ids can never map to the same key or field.
    """
    return quote(part, safe="")
