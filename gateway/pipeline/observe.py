"""The observe step: one record per request that got past parsing and authentication (a body
refused by validation has no record), handed to every observer. Metrics are one observer; a
request log attaches here as another."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from strategies import CallRecord

from gateway.metrics import Metrics

log = logging.getLogger("ttc.observe")


@dataclass(frozen=True)
class RequestRecord:
    """One request as it ended. `messages` and `response_text` are the content itself: an observer
    that stores records keeps them only when `log_content` (the tenant opted in), else a hash."""

    request_id: str
    time: float  # unix seconds at arrival
    tenant_id: str
    key_id: str
    endpoint: str
    requested_model: str
    served_model: str
    status: str
    error_code: str | None
    router: dict[str, Any] | None
    strategy: str | None
    calls: tuple[CallRecord, ...]
    latency_s: float
    first_byte_s: float | None
    strategy_n: int | None = None
    degraded: bool = False
    log_content: bool = False
    messages: list[dict[str, Any]] | None = None
    response_text: str | None = None
    response_tool_calls: list[dict[str, Any]] | None = None

    @property
    def cost_usd(self) -> float:
        return sum(call.cost_usd for call in self.calls)


class Observer(Protocol):
    def observe(self, record: RequestRecord) -> None:
        """Called once per request, off the response path; must not raise or block."""


class MetricsObserver:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def observe(self, record: RequestRecord) -> None:
        metrics = self.metrics
        metrics.observe_request(record.tenant_id, record.served_model, record.status, record.latency_s)
        for call in record.calls:
            metrics.observe_call(record.tenant_id, call.model, call.prompt_tokens, call.completion_tokens, call.cost_usd)
        if record.strategy is not None:
            metrics.child(metrics.strategy_requests, record.tenant_id, record.strategy).inc()


def notify(observers: Sequence[Observer], record: RequestRecord) -> None:
    for observer in observers:
        try:
            observer.observe(record)
        except Exception:  # an observer's failure never fails or delays a request
            log.exception("request observer %s failed", type(observer).__name__)
