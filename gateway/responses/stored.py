"""Responses kept in the request log: read back by `GET /v1/responses/{id}`, and continued from by
`previous_response_id`.

A response is stored when its tenant logs content (`log_content: true`) and the request did not say
`store: false`; its id is `resp_<request id>`. The log's row holds the conversation as the upstream
saw it and the assistant's answer (text and tool calls), which is all a continuation needs."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.auth import TenantPrincipal
from gateway.errors import GatewayError, invalid_request, not_found
from gateway.requestlog.api import unavailable
from gateway.requestlog.row import LogRow
from gateway.requestlog.store import StoreUnavailable
from gateway.runtime import GatewayRuntime

PREFIX = "resp_"
ENDPOINT = "/v1/responses"
# Another replica's writer batches rows for up to 0.2 s: a response it answered a moment ago may not
# be in the store yet, so a miss is looked up again for about a second before it counts.
LOOKUPS = 6
LOOKUP_PAUSE_S = 0.2


class NotStored(Exception):
    """Why a response cannot be read back; the caller turns it into its own error."""


async def find_stored(runtime: GatewayRuntime, principal: TenantPrincipal, response_id: str) -> LogRow:
    """The tenant's stored response `response_id`, or NotStored saying why not."""
    log = runtime.request_log
    if log is None:
        raise NotStored("this gateway keeps no request log (request_log.enabled: false), so it stores no responses")
    if not response_id.startswith(PREFIX) or len(response_id) == len(PREFIX):
        raise NotStored(f"'{response_id}' is not a response id this gateway issued (they start with '{PREFIX}')")
    request_id = response_id[len(PREFIX):]
    await runtime.state.inflight.wait_settled(principal.tenant.id)
    await log.flush()
    for attempt in range(LOOKUPS):
        try:
            found = await asyncio.to_thread(log.store.get, request_id, principal.tenant.id)
        except StoreUnavailable:
            raise unavailable() from None
        if found is not None:
            return _checked(found[0], response_id)
        if attempt + 1 < LOOKUPS:
            await asyncio.sleep(LOOKUP_PAUSE_S)
    raise NotStored(f"response '{response_id}' was not found")


def _checked(row: LogRow, response_id: str) -> LogRow:
    if row.endpoint != ENDPOINT:
        raise NotStored(f"'{response_id}' was not made through {ENDPOINT}")
    if not row.status.startswith("2"):
        raise NotStored(f"response '{response_id}' failed (status {row.status}) and has no answer to continue from")
    if row.messages is None:
        raise NotStored(f"the content of '{response_id}' was not kept (its tenant has log_content: false, or the "
                        "request said store: false)")
    return row


def previous_not_stored(why: NotStored) -> GatewayError:
    return invalid_request(f"previous_response_id cannot be used: {why}. Send the whole conversation in `input` "
                           "instead.", param="previous_response_id", code="previous_response_not_found")


def lookup_not_stored(why: NotStored) -> GatewayError:
    return not_found(f"No stored response: {why}.")


def continued_conversation(row: LogRow, instructions: str | None) -> list[dict[str, Any]]:
    """The stored conversation and its answer, to which a new turn is added. New `instructions`
    replace the stored conversation's leading system messages rather than stacking on them."""
    messages: list[dict[str, Any]] = [dict(message) for message in row.messages or []]
    if instructions is not None:
        while messages and messages[0].get("role") in ("system", "developer"):
            messages.pop(0)
    answer: dict[str, Any] = {"role": "assistant", "content": row.response_text or None}
    if row.response_tool_calls:
        answer["tool_calls"] = row.response_tool_calls
    if answer["content"] is None and "tool_calls" not in answer:
        answer["content"] = ""
    return [*messages, answer]
