"""Upstream failures, classified once so retries, metrics and client errors agree."""

from __future__ import annotations

from typing import Literal

from gateway.errors import GatewayError

UpstreamErrorKind = Literal["rate_limited", "server_error", "timeout", "connection", "bad_request", "auth", "unsupported"]

RETRYABLE: frozenset[str] = frozenset({"rate_limited", "server_error", "timeout", "connection"})


class UpstreamError(Exception):
    def __init__(self, kind: UpstreamErrorKind, message: str, *, status: int | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after_s = retry_after_s

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE

    def to_gateway_error(self, model_name: str) -> GatewayError:
        detail = f"Upstream for model '{model_name}': {self.message}"
        if self.kind == "rate_limited":
            return GatewayError(429, detail, type="rate_limit_error", code="upstream_rate_limited", headers={"x-should-retry": "true"})
        if self.kind == "timeout":
            return GatewayError(504, detail, type="api_error", code="upstream_timeout")
        if self.kind in ("bad_request", "unsupported"):
            return GatewayError(400, detail, type="invalid_request_error", code="upstream_bad_request")
        return GatewayError(502, detail, type="api_error", code="upstream_error")


def classify_status(status: int) -> UpstreamErrorKind:
    if status == 429:
        return "rate_limited"
    if status in (401, 403):
        return "auth"
    if status == 408:
        return "timeout"
    if 400 <= status < 500:
        return "bad_request"
    return "server_error"
