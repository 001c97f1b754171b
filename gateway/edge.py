"""The parse and authenticate steps at the HTTP edge: a bounded body, validated by pydantic,
from a caller identified by its key."""

from __future__ import annotations

from typing import TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from gateway.auth import AdminPrincipal, Principal, TenantPrincipal, bearer_token
from gateway.errors import GatewayError, body_too_large, invalid_api_key, invalid_request
from gateway.runtime import GatewayRuntime

M = TypeVar("M", bound=BaseModel)

# orjson parses 1,024 levels of nesting but encodes only 254, and a body is re-encoded for the
# upstream at the same depth. Only a body with this many brackets can be that deep, so the
# exact check (encoding it) runs only then, off the common path.
ENCODER_DEPTH = 254


def check_depth(raw: bytes, data: dict[str, object]) -> None:
    if raw.count(b"[") + raw.count(b"{") < ENCODER_DEPTH:
        return
    for key, value in data.items():
        try:
            orjson.dumps({key: value})  # as deep as it will sit in the upstream body
        except orjson.JSONEncodeError:
            raise invalid_request(f"'{key}' is nested too deeply: at most {ENCODER_DEPTH - 1} levels of arrays and "
                                  "objects are accepted.", param=key) from None


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise body_too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise body_too_large(limit)  # chunked bodies carry no content-length
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_body(request: Request, model: type[M], limit: int) -> M:
    return validated(model, await parse_object(request, limit))


async def parse_object(request: Request, limit: int) -> dict[str, object]:
    """The body as a JSON object, before validation: for a handler that also needs it as sent."""
    raw = await read_body(request, limit)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise invalid_request(f"We could not parse the JSON body of your request: {error}") from None
    if not isinstance(data, dict):
        raise invalid_request("The request body must be a JSON object.")
    check_depth(raw, data)
    return data


def validated(model: type[M], data: dict[str, object]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        where = f"Invalid value for '{param}'" if param else "Invalid request body"
        raise invalid_request(f"{where}: {first['msg']}", param=param) from None


def authenticate(runtime: GatewayRuntime, request: Request) -> Principal:
    # `Authorization: Bearer` as OpenAI clients send it, or `x-api-key` as Anthropic's do.
    token = bearer_token(request.headers.get("authorization")) or request.headers.get("x-api-key") or None
    principal = runtime.state.keys.lookup(token) if token else None
    if principal is None:
        raise invalid_api_key()
    return principal


def tenant_principal(runtime: GatewayRuntime, request: Request) -> TenantPrincipal:
    principal = authenticate(runtime, request)
    if isinstance(principal, AdminPrincipal):
        raise GatewayError(403, "The admin key cannot make model requests; use a tenant key.", type="permission_error", code="admin_key_not_allowed")
    return principal
