"""Every request's id: the client's `x-request-id` when it is a safe token, else a new one; sent
back on every response, and carried into the `ttc` object and the request's record."""

from __future__ import annotations

import re
import uuid

from starlette.types import Message, Scope, Send

HEADER = b"x-request-id"
# Short and free of anything a log line, a header or a URL would have to escape.
SAFE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def request_id_of(scope: Scope) -> str:
    for name, value in scope.get("headers") or ():
        if name == HEADER and SAFE_ID.fullmatch(value):
            return value.decode("ascii")
    return f"req_{uuid.uuid4().hex}"


def sending_request_id(send: Send, request_id: str) -> Send:
    header = (HEADER, request_id.encode("ascii"))

    async def send_with_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), header]
        await send(message)

    return send_with_id
