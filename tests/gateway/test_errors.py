"""Every error class leaves as the OpenAI error shape with the right status, type and code."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import httpx
import openai
import pytest

from testkit.servers import ThreadedServer, free_port
from tests.gateway.conftest import OTHER_KEY, TENANT_KEY, RunningGateway, base_config, fake_model

MESSAGES = [{"role": "user", "content": "hello there"}]


def assert_error(error: openai.APIStatusError, status: int, type_: str, code: str | None) -> None:
    assert error.status_code == status
    body = error.response.json()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    assert body["type"] == type_
    assert body["code"] == code
    assert body["message"]


def test_bad_json_is_400(gateway: RunningGateway) -> None:
    response = httpx.post(gateway.url + "/v1/chat/completions", content=b"{not json", headers={"authorization": f"Bearer {TENANT_KEY}"})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"temperature": 7}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"n": 0}, "n"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ],
)
def test_invalid_fields_are_400_naming_the_field(gateway: RunningGateway, kwargs: dict[str, Any], param: str) -> None:
    request: dict[str, Any] = {"model": "fast", "messages": MESSAGES, **kwargs}
    with pytest.raises(openai.BadRequestError) as info:
        gateway.client().chat.completions.create(**request)
    assert_error(info.value, 400, "invalid_request_error", None)
    assert info.value.response.json()["error"]["param"].startswith(param)


def test_body_that_is_not_an_object_is_400(gateway: RunningGateway) -> None:
    response = httpx.post(gateway.url + "/v1/chat/completions", content=b"[1,2]", headers={"authorization": f"Bearer {TENANT_KEY}"})
    assert response.status_code == 400


def test_unknown_key_is_401(gateway: RunningGateway) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        gateway.client(key="sk-nobody").chat.completions.create(model="fast", messages=MESSAGES)
    assert_error(info.value, 401, "invalid_request_error", "invalid_api_key")


def test_missing_key_is_401(gateway: RunningGateway) -> None:
    response = httpx.post(gateway.url + "/v1/chat/completions", json={"model": "fast", "messages": MESSAGES})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_unknown_model_and_foreign_model_look_the_same(gateway: RunningGateway) -> None:
    errors = []
    for model in ("no-such-model", "private"):  # `private` exists, but belongs to tenant-b
        with pytest.raises(openai.NotFoundError) as info:
            gateway.client().chat.completions.create(model=model, messages=MESSAGES)
        assert_error(info.value, 404, "invalid_request_error", "model_not_found")
        errors.append(info.value.response.json()["error"]["message"].replace(model, "X"))
    assert errors[0] == errors[1]
    # tenant-b can use its own model
    assert gateway.client(key=OTHER_KEY).chat.completions.create(model="private", messages=MESSAGES, max_tokens=2).choices


def test_oversized_body_is_413(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path) -> None:
    config = base_config(fake_upstream.url, tmp_path)
    config["server"]["max_body_bytes"] = 2048
    gw = start_gateway(config)
    with pytest.raises(openai.APIStatusError) as info:
        gw.client().chat.completions.create(model="fast", messages=[{"role": "user", "content": "x" * 5000}])
    assert info.value.status_code == 413
    assert info.value.response.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize("fast_path", ["auto", "off"])
@pytest.mark.parametrize(
    ("upstream_model", "status", "type_", "code", "exc"),
    [
        ("error-429", 429, "rate_limit_error", "upstream_rate_limited", openai.RateLimitError),
        ("error-500", 502, "api_error", "upstream_error", openai.APIStatusError),
        ("error-503", 502, "api_error", "upstream_error", openai.APIStatusError),
        ("slow-3000", 504, "api_error", "upstream_timeout", openai.APIStatusError),
    ],
)
def test_upstream_failures_map_to_gateway_errors(
    fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path,
    upstream_model: str, status: int, type_: str, code: str, exc: type[Exception], fast_path: str,
) -> None:
    config = base_config(fake_upstream.url, tmp_path)
    config["models"].append(fake_model("broken", fake_upstream.url, upstream_model, timeout_s=0.5, max_retries=0,
                                       litellm_params={"fast_path": fast_path}))
    config["tenants"][0]["allowed_models"] = ["*"]
    gw = start_gateway(config)
    for stream in (False, True):
        with pytest.raises(exc) as info:
            result = gw.client().chat.completions.create(model="broken", messages=MESSAGES, max_tokens=3, stream=stream)
            if stream:
                list(result)
        assert_error(info.value, status, type_, code)  # type: ignore[arg-type]
    # Nothing was spent, and nothing stays reserved.
    usage = httpx.get(gw.url + "/v1/tenants/tenant-a/usage", headers={"authorization": f"Bearer {TENANT_KEY}"}).json()
    assert usage["windows"][0]["spent_usd"] == 0
    assert usage["windows"][0]["reserved_usd"] == 0


def test_ledger_unreachable_is_503_and_no_upstream_call(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path) -> None:
    config = base_config(fake_upstream.url, tmp_path, ledger={"redis_url": f"redis://127.0.0.1:{free_port()}/0", "redis_connect_timeout_s": 0.2})
    gw = start_gateway(config)
    before = len(fake_upstream.app.requests)  # type: ignore[attr-defined]
    with pytest.raises(openai.APIStatusError) as info:
        gw.client().chat.completions.create(model="fast", messages=MESSAGES, max_tokens=2)
    assert_error(info.value, 503, "service_unavailable", "ledger_unavailable")
    assert len(fake_upstream.app.requests) == before  # type: ignore[attr-defined]
    ready = httpx.get(gw.url + "/health/ready")
    assert ready.status_code == 503


def test_unknown_route_and_method_are_openai_shaped(gateway: RunningGateway) -> None:
    missing = httpx.get(gateway.url + "/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = httpx.get(gateway.url + "/v1/chat/completions")
    assert wrong.status_code == 405 and "error" in wrong.json()


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": 5, "messages": "x"}',
        b'{"model": "fast", "messages": [{"role": "user", "content": {"weird": true}}]}',
        b'{"model": "fast", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {}}]}',
        b'{"model": "fast", "messages": [{"role": "user", "content": "hi"}], "ttc": {"n": -3}}',
        b'{"model": "fast", "messages": [{"role": "user", "content": "hi"}], "stream_options": 7}',
        b'\xff\xfe garbage',
        b'',
    ],
)
def test_malformed_inputs_never_500(gateway: RunningGateway, body: bytes) -> None:
    response = httpx.post(gateway.url + "/v1/chat/completions", content=body, headers={"authorization": f"Bearer {TENANT_KEY}", "content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
