"""Malformed bodies, unknown paths and wrong methods get clear 4xx answers in the OpenAI shape,
never a 5xx: a corpus of several hundred bad bodies, plain and streamed, with and without a
strategy, through real HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
import yaml

from tests.gateway.conftest import ADMIN_KEY, TENANT_KEY, RunningGateway, base_config
from testkit.servers import ThreadedServer

BASE: dict[str, Any] = {"model": "fast", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def deep(levels: int, leaf: Any = 1, container: str = "list") -> Any:
    value = leaf
    for _ in range(levels):
        value = [value] if container == "list" else {"k": value}
    return value


BAD_VALUES: list[Any] = [None, True, -1, 0, 1.5e308, "x", "", [], {}, [None], [[]], {"a": None}, [1, "a", None],
                         deep(300), deep(260, container="dict"), "\u0000", "é" * 50]
FIELDS = ["model", "messages", "max_tokens", "max_completion_tokens", "n", "temperature", "top_p", "stop", "seed",
          "tools", "tool_choice", "response_format", "user", "stream_options", "ttc", "logit_bias", "logprobs",
          "parallel_tool_calls", "metadata"]
MESSAGE_FIELDS = ["role", "content", "name", "tool_calls", "tool_call_id"]
TTC_FIELDS = ["strategy", "n", "selector", "cost_weight", "tolerance", "max_cost_per_request_usd", "rounds", "judge_model"]
NAMED_CASES: list[Any] = [
    {"tools": [{"type": "function", "function": "f"}]},
    {"tools": [None, None]},
    {"tools": [{"type": "function", "function": {"name": ""}}]},
    {"tools": [{"type": "function", "function": {"name": 3}}]},
    {"tools": [{"type": "function"}]},
    {"messages": [{"role": "user", "content": [None, 1, "x"]}]},
    {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]},
    {"messages": [{"role": "tool"}]},
    {"messages": [{"content": "no role"}]},
    {"stop": ["a", "b", "c", "d", "e"]},
    {"extra": deep(253)},
    {"extra": deep(254)},
    {"messages": [{"role": "user", "content": deep(250)}]},
]


def corpus() -> Iterator[tuple[str, bytes]]:
    for field in FIELDS:
        for index, value in enumerate(BAD_VALUES):
            yield f"{field}={index}", json.dumps({**BASE, field: value}).encode()
    for field in MESSAGE_FIELDS:
        for index, value in enumerate(BAD_VALUES):
            yield f"messages.0.{field}={index}", json.dumps({**BASE, "messages": [{"role": "user", "content": "hi", field: value}]}).encode()
    for field in TTC_FIELDS:
        for index, value in enumerate(BAD_VALUES):
            yield f"ttc.{field}={index}", json.dumps({**BASE, "ttc": {"strategy": "best_of_n", field: value}}).encode()
    for index, case in enumerate(NAMED_CASES):
        yield f"named-{index}", json.dumps({**BASE, **case}).encode()
    for index, raw in enumerate([b"", b"{", b"[]", b"null", b"1", b'"s"', b"\xff\xfe", b'{"model": "fast", "messages": [}',
                                 b'{"model": NaN}', b"\xef\xbb\xbf{}", b"[" * 1000 + b"]" * 1000, b"[" * 2000 + b"]" * 2000]):
        yield f"raw-{index}", raw


CASES = list(corpus())


def variants(body: bytes) -> Iterator[tuple[str, bytes]]:
    """The same malformed body plain, streamed, with a strategy, and both."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        yield "as-is", body
        return
    if not isinstance(data, dict):
        yield "as-is", body
        return
    for stream in (False, True):
        for strategy in (False, True):
            changed = dict(data)
            changed["stream"] = stream
            if strategy and "ttc" not in data:
                changed["ttc"] = {"strategy": "best_of_n", "n": 2}
            yield f"stream={stream},strategy={strategy}", json.dumps(changed).encode()


@pytest.fixture(scope="module")
def hardened(fake_upstream: ThreadedServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from gateway.app import create_app
    from gateway.runtime import ConfigSource

    tmp = tmp_path_factory.mktemp("hostile")
    config = base_config(fake_upstream.url, tmp)
    config["tenants"][0]["budgets"] = [{"window": "day", "limit_usd": 1000.0}]
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with ThreadedServer(create_app(ConfigSource(str(path)))) as server:
        yield server.url


def test_corpus_is_large() -> None:
    assert sum(1 for _ in CASES) >= 300


def test_no_malformed_body_gets_a_5xx(hardened: str) -> None:
    failures: list[str] = []
    statuses: dict[int, int] = {}
    headers = {"authorization": f"Bearer {TENANT_KEY}", "content-type": "application/json"}
    with httpx.Client(base_url=hardened, headers=headers, timeout=30) as client:
        for name, body in CASES:
            for variant, payload in variants(body):
                response = client.post("/v1/chat/completions", content=payload)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                text = response.text
                if response.status_code >= 500 or "server_error" in text or "internal_error" in text:
                    failures.append(f"{name} [{variant}]: {response.status_code} {text[:200]}")
                elif response.status_code >= 400:
                    error = response.json()["error"]
                    if not error["message"] or "None" in error["message"]:
                        failures.append(f"{name} [{variant}]: unclear message {error['message']!r}")
    assert not failures, "\n".join(failures[:20]) + f"\n({len(failures)} in all; statuses {statuses})"
    assert statuses.get(400, 0) >= 300, statuses  # the corpus is mostly malformed, and refused as such


def test_the_named_failures_name_their_field(hardened: str) -> None:
    headers = {"authorization": f"Bearer {TENANT_KEY}"}
    for case, param in [({"tools": [{"type": "function", "function": "f"}]}, "tools"),
                        ({"tools": [None, None]}, "tools.0"),
                        ({"extra": deep(254)}, "extra"),
                        ({"messages": [{"role": "user", "content": deep(260)}]}, "messages")]:
        response = httpx.post(f"{hardened}/v1/chat/completions", headers=headers, json={**BASE, **case}, timeout=30)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == param


def test_unknown_paths_name_the_endpoints_and_405_says_allow(hardened: str) -> None:
    missing = httpx.get(f"{hardened}/v1/chat/complete")
    assert missing.status_code == 404
    message = missing.json()["error"]["message"]
    assert "POST /v1/chat/completions" in message and "GET /v1/models" in message
    wrong = httpx.get(f"{hardened}/v1/chat/completions")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert wrong.json()["error"]["code"] == "method_not_allowed"


def test_metrics_can_require_a_token(fake_upstream: ThreadedServer, start_gateway: Callable[[dict[str, Any]], RunningGateway],
                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_METRICS_TOKEN", "scrape-me")
    config = base_config(fake_upstream.url, tmp_path)
    config["server"]["metrics_token"] = "os.environ/TEST_METRICS_TOKEN"
    gw = start_gateway(config)
    assert httpx.get(f"{gw.url}/metrics").status_code == 401
    assert httpx.get(f"{gw.url}/metrics", headers={"authorization": f"Bearer {TENANT_KEY}"}).status_code == 401
    for key in ("scrape-me", ADMIN_KEY):
        scraped = httpx.get(f"{gw.url}/metrics", headers={"authorization": f"Bearer {key}"})
        assert scraped.status_code == 200 and "ttc_requests_total" in scraped.text
    open_gw = start_gateway(base_config(fake_upstream.url, tmp_path / "open"))
    assert httpx.get(f"{open_gw.url}/metrics").status_code == 200  # unset: open, as documented


def test_a_local_model_without_its_runtime_is_refused_at_load(tmp_path: Path) -> None:
    config = {"models": [{"name": "tiny", "litellm_params": {"model": "local/smollm2-135m"},
                          "price": {"input_per_1m": 0.05, "output_per_1m": 0.1}}]}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    # As if llama-cpp-python were not installed: a None entry makes every import of it fail.
    script = ("import sys; sys.modules['llama_cpp'] = None; from gateway.cli import main; "
              f"sys.argv = ['ttc', 'check-config', {str(path)!r}]; main()")
    refused = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "'tiny'" in refused.stderr and "ttc-gateway[local]" in refused.stderr
    accepted = subprocess.run([sys.executable, "-m", "gateway.cli", "check-config", str(path)], capture_output=True, text=True, timeout=120)
    assert accepted.returncode == 0, accepted.stderr


API_BASES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "/v1/responses": ({"model": "fast", "input": "hi", "max_output_tokens": 4},
                      ["model", "input", "instructions", "max_output_tokens", "temperature", "tools", "tool_choice", "text",
                       "metadata", "previous_response_id", "parallel_tool_calls", "ttc"]),
    "/v1/messages": ({"model": "fast", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]},
                     ["model", "messages", "max_tokens", "system", "stop_sequences", "temperature", "tools", "tool_choice",
                      "metadata", "top_k", "ttc"]),
}


@pytest.mark.parametrize("path", list(API_BASES))
def test_the_other_apis_refuse_malformed_bodies_in_their_own_shape(hardened: str, path: str) -> None:
    base, fields = API_BASES[path]
    bodies = [json.dumps({**base, field: value}).encode() for field in fields for value in BAD_VALUES]
    bodies += [json.dumps({**base, "input": [{"type": "function_call_output"}]}).encode(),
               json.dumps({**base, "messages": [{"role": "user", "content": [{"type": "tool_result"}]}]}).encode(),
               b"", b"[]", b"{", b"[" * 2000 + b"]" * 2000]
    headers = {"authorization": f"Bearer {TENANT_KEY}", "content-type": "application/json"}
    failures: list[str] = []
    refused = 0
    with httpx.Client(base_url=hardened, headers=headers, timeout=30) as client:
        for body in bodies:
            for stream in (False, True):
                payload = body
                if body.startswith(b"{") and body.endswith(b"}"):
                    payload = json.dumps({**json.loads(body), "stream": stream}).encode()
                response = client.post(path, content=payload)
                if response.status_code >= 500 or "internal_error" in response.text:
                    failures.append(f"{payload[:120]!r}: {response.status_code} {response.text[:160]}")
                elif response.status_code >= 400:
                    refused += 1
                    error = response.json()
                    shaped = error["error"]["type"] if path == "/v1/messages" and error.get("type") == "error" else error["error"]["message"]
                    if not shaped:
                        failures.append(f"{payload[:120]!r}: not in the API's error shape: {error}")
    assert not failures, "\n".join(failures[:20])
    assert refused >= 150
