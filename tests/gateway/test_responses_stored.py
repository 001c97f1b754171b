"""Stored responses: `previous_response_id` and `GET /v1/responses/{id}`, read back from the request
log, through the official `openai` SDK."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Callable

import openai
import pytest

from gateway.requestlog.sqlite_store import SqliteRequestStore
from gateway.requestlog.store import COLUMNS
from tests.gateway.conftest import OTHER_KEY, RunningGateway
from tests.gateway.test_responses_api import TOOLS, responses_config, sent_bodies
from testkit.servers import ThreadedServer


def stored_config(upstream: str, tmp_path: Path, ledger: dict[str, Any], log_content: bool = True) -> dict[str, Any]:
    config = responses_config(upstream, tmp_path, ledger)
    config["request_log"] = {"path": str(tmp_path / "requests.db")}
    config["tenants"][0]["log_content"] = log_content
    config["tenants"][1]["allowed_models"] = ["m"]
    return config


def test_a_conversation_continues_from_stored_responses(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway],
                                                        tmp_path: Path, ledger_section: dict[str, Any]) -> None:
    gw = start_gateway(stored_config(fake_upstream.url, tmp_path, ledger_section))
    client = gw.client()
    first = client.responses.create(model="m", input="one two", instructions="Be brief.", max_output_tokens=2)
    second = client.responses.create(model="m", input="three", previous_response_id=first.id, max_output_tokens=3)
    assert second.previous_response_id == first.id and second.output_text == "tok tok tok"
    assert sent_bodies(fake_upstream)[-1]["messages"] == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "one two"},
        {"role": "assistant", "content": "tok tok"}, {"role": "user", "content": "three"}]
    # New instructions replace the stored ones instead of stacking on them; a streamed turn is stored too.
    with client.responses.stream(model="m", input="four", previous_response_id=second.id, instructions="Be terse.",
                                 max_output_tokens=1) as stream:
        third = stream.get_final_response()
    assert sent_bodies(fake_upstream)[-1]["messages"] == [
        {"role": "system", "content": "Be terse."}, {"role": "user", "content": "one two"},
        {"role": "assistant", "content": "tok tok"}, {"role": "user", "content": "three"},
        {"role": "assistant", "content": "tok tok tok"}, {"role": "user", "content": "four"}]
    client.responses.create(model="m", input="five", previous_response_id=third.id, max_output_tokens=1)
    assert sent_bodies(fake_upstream)[-1]["messages"][-3:] == [
        {"role": "user", "content": "four"}, {"role": "assistant", "content": "tok"}, {"role": "user", "content": "five"}]

    fetched = client.responses.retrieve(second.id)
    assert (fetched.id, fetched.output_text, fetched.model) == (second.id, "tok tok tok", "m")
    assert fetched.usage is not None and second.usage is not None
    assert (fetched.usage.input_tokens, fetched.usage.output_tokens) == (second.usage.input_tokens, second.usage.output_tokens)
    with pytest.raises(openai.NotFoundError):  # another tenant's response is not found, not forbidden
        gw.client(OTHER_KEY).responses.retrieve(second.id)


@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_call_round_trip_by_previous_response_id(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway],
                                                        tmp_path: Path, stream: bool) -> None:
    gw = start_gateway(stored_config(fake_upstream.url, tmp_path, {"path": str(tmp_path / "l.db")}))
    client = gw.client()
    if stream:
        with client.responses.stream(model="tool", input="Look up x.", tools=TOOLS) as events:
            asked = events.get_final_response()
    else:
        asked = client.responses.create(model="tool", input="Look up x.", tools=TOOLS)
    (call,) = [item for item in asked.output if item.type == "function_call"]
    answered = client.responses.create(model="tool", previous_response_id=asked.id, max_output_tokens=2,
                                       input=[{"type": "function_call_output", "call_id": call.call_id, "output": "x is 42"}])
    assert answered.output_text == "tok tok"
    assert sent_bodies(fake_upstream)[-1]["messages"] == [
        {"role": "user", "content": "Look up x."},
        {"role": "assistant",
         "tool_calls": [{"id": call.call_id, "type": "function", "function": {"name": "lookup", "arguments": '{"x": 1}'}}]},
        {"role": "tool", "tool_call_id": call.call_id, "content": "x is 42"}]
    fetched = client.responses.retrieve(asked.id)
    assert [(item.type, item.call_id, item.arguments) for item in fetched.output] == [("function_call", call.call_id, '{"x": 1}')]  # type: ignore[union-attr]


def test_what_is_not_stored_is_refused_saying_why(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway],
                                                  tmp_path: Path) -> None:
    gw = start_gateway(stored_config(fake_upstream.url, tmp_path, {"path": str(tmp_path / "l.db")}))
    client = gw.client()
    unkept = client.responses.create(model="m", input="secret", store=False, max_output_tokens=1)
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="m", input="more", previous_response_id=unkept.id)
    body: dict[str, Any] = refused.value.body  # type: ignore[assignment]
    assert body["param"] == "previous_response_id" and body["code"] == "previous_response_not_found"
    assert "store: false" in body["message"]
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unkept.id)
    with pytest.raises(openai.BadRequestError) as unknown:
        client.responses.create(model="m", input="more", previous_response_id="resp_never-issued")
    assert "not found" in unknown.value.body["message"]  # type: ignore[index]
    chat = client.chat.completions.with_raw_response.create(model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=1)
    with pytest.raises(openai.BadRequestError) as not_a_response:
        client.responses.create(model="m", input="more", previous_response_id=f"resp_{chat.headers['x-request-id']}")
    assert "/v1/responses" in not_a_response.value.body["message"]  # type: ignore[index]


def test_a_tenant_that_keeps_no_content_cannot_chain(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway],
                                                     tmp_path: Path) -> None:
    gw = start_gateway(stored_config(fake_upstream.url, tmp_path, {"path": str(tmp_path / "l.db")}, log_content=False))
    client = gw.client()
    first = client.responses.create(model="m", input="hi", max_output_tokens=1)
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="m", input="more", previous_response_id=first.id)
    assert "log_content: false" in refused.value.body["message"]  # type: ignore[index]


def test_a_log_file_from_before_the_answer_column_gains_it(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old_columns = [c for c in COLUMNS if c != "response_tool_calls"]
    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TABLE request_log ({', '.join(old_columns)}, PRIMARY KEY (request_id, time))")
    store = SqliteRequestStore(path, retention_days=30)
    store.setup()
    store.close()
    with sqlite3.connect(path) as conn:
        present = [row[1] for row in conn.execute("PRAGMA table_info(request_log)")]
    assert present == list(COLUMNS)
