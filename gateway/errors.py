"""OpenAI-format errors. Every failure leaves the gateway as one of these, never a 500 page."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class GatewayError(Exception):
    """An error with the exact status, type and code the OpenAI SDK maps to its exceptions."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> Response:
        return Response(
            orjson.dumps(self.body()),
            status_code=self.status,
            media_type="application/json",
            headers=self.headers,
        )


def invalid_request(message: str, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError(400, message, param=param, code=code)


def invalid_api_key() -> GatewayError:
    return GatewayError(
        401,
        "Incorrect or missing API key. Pass it as 'Authorization: Bearer <key>' (or 'x-api-key: <key>').",
        type="invalid_request_error",
        code="invalid_api_key",
        # Retrying cannot fix a wrong key; Claude Code honours this header and otherwise sends its
        # whole request ten more times.
        headers={"x-should-retry": "false"},
    )


def model_not_found(name: str) -> GatewayError:
    # Same answer for "does not exist" and "not yours", so other tenants' model names do not leak.
    return GatewayError(
        404,
        f"The model '{name}' does not exist or you do not have access to it.",
        type="invalid_request_error",
        code="model_not_found",
        param="model",
    )


def not_found(message: str) -> GatewayError:
    return GatewayError(404, message, type="invalid_request_error", code="not_found")


def body_too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"Request body is larger than the {limit}-byte limit.", code="request_too_large")


def ledger_unavailable() -> GatewayError:
    return GatewayError(
        503,
        "The budget ledger is unreachable; no upstream call was made. Retry later.",
        type="service_unavailable",
        code="ledger_unavailable",
    )


def internal_error() -> GatewayError:
    return GatewayError(500, "Internal gateway error.", type="server_error", code="internal_error")


def sse_error_event(error: GatewayError) -> bytes:
    return b"data: " + orjson.dumps(error.body()) + b"\n\n"
