"""Errors in Anthropic's shape: `{"type": "error", "error": {"type", "message"}}`, typed by status."""

from __future__ import annotations

from gateway.errors import GatewayError
from gateway.upstream import Json

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
               405: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 503: "overloaded_error",
               529: "overloaded_error"}


def error_body(error: GatewayError) -> Json:
    return {"type": "error", "error": {"type": ERROR_TYPES.get(error.status, "api_error"), "message": error.message}}
