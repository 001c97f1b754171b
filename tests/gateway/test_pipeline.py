"""One pipeline for every request: rate limits and token counts hold for plain, streamed and
strategy requests alike, through real HTTP with the OpenAI SDK."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import httpx
import openai
import pytest

from testkit.servers import ThreadedServer
from tests.gateway.conftest import ADMIN_KEY, RunningGateway, base_config, fake_model

MESSAGES = [{"role": "user", "content": "one two three four five"}]  # fake upstream: 8 prompt tokens
PROMPT_TOKENS = 8
BEST_OF_2 = {"ttc": {"strategy": "best_of_n", "n": 2}}


def limited_config(upstream: str, tmp_path: Path, ledger: dict[str, Any], rate_limits: dict[str, int],
                   **tenant: Any) -> dict[str, Any]:
    config = base_config(upstream, tmp_path, ledger=ledger)
    # `single` has no native `n`: a best-of-4 is four upstream calls, each billed its prompt.
    config["models"] = [fake_model("m", upstream, "m"), fake_model("single", upstream, "m", supports_n=False)]
    config["tenants"][0].update({"allowed_models": ["*"], "rate_limits": rate_limits, **tenant})
    return config


def plain(client: openai.OpenAI) -> None:
    client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=2)


def plain_stream(client: openai.OpenAI) -> None:
    for _ in client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=2, stream=True):
        pass


def strategy(client: openai.OpenAI) -> None:
    client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=2, extra_body=BEST_OF_2)


def strategy_stream(client: openai.OpenAI) -> None:
    for _ in client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=2, stream=True, extra_body=BEST_OF_2):
        pass


KINDS: dict[str, tuple[Callable[[openai.OpenAI], None], dict[str, Any]]] = {
    "plain": (plain, {}),
    "plain-stream": (plain_stream, {}),
    "strategy": (strategy, {}),
    "strategy-stream": (strategy_stream, {}),
    "tenant-default-strategy": (plain, {"strategy": {"strategy": "best_of_n", "n": 2}}),
    "tenant-default-strategy-stream": (plain_stream, {"strategy": {"strategy": "best_of_n", "n": 2}}),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_rpm_limits_every_kind_of_request(kind: str, fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway],
                                          tmp_path: Path, ledger_section: dict[str, Any]) -> None:
    send, tenant = KINDS[kind]
    gw = start_gateway(limited_config(fake_upstream.url, tmp_path, ledger_section, {"rpm": 3}, **tenant))
    client = gw.client()
    for _ in range(3):
        send(client)
    with pytest.raises(openai.RateLimitError) as info:
        send(client)
    assert info.value.response.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(info.value.response.headers["retry-after"]) >= 1


def settled(gw: RunningGateway) -> None:
    """The usage endpoint waits for this process's pending settlements (and token true-ups)."""
    assert httpx.get(f"{gw.url}/v1/tenants/tenant-a/usage", headers={"authorization": f"Bearer {ADMIN_KEY}"}).status_code == 200


def answered_before_tpm_429(gw: RunningGateway, send: Callable[[openai.OpenAI], None], limit: int = 20) -> int:
    client = gw.client()
    for answered in range(limit):
        try:
            send(client)
        except openai.RateLimitError as error:
            assert error.response.json()["error"]["code"] == "rate_limit_exceeded"
            return answered
        settled(gw)
    raise AssertionError(f"no 429 within {limit} requests")


def test_tpm_counts_every_internal_call(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway],
                                        tmp_path: Path, ledger_section: dict[str, Any]) -> None:
    # A plain request with max_tokens 10 is 8 + 10 = 18 tokens, admitted on that estimate too.
    # A best-of-4 on a model without native n is four calls: 4 x 18 = 72 tokens, though it is
    # admitted on the estimate of its first call (18).
    def plain10(client: openai.OpenAI) -> None:
        client.chat.completions.create(model="single", messages=MESSAGES, max_tokens=10)

    def best_of_4(client: openai.OpenAI) -> None:
        response = client.chat.completions.with_raw_response.create(
            model="single", messages=MESSAGES, max_tokens=10, extra_body={"ttc": {"strategy": "best_of_n", "n": 4}})
        assert len(response.parse().model_extra["ttc"]["calls"]) == 4

    tpm = 100
    plain_gw = start_gateway(limited_config(fake_upstream.url, tmp_path, ledger_section, {"tpm": tpm}))
    strategy_config = limited_config(fake_upstream.url, tmp_path, ledger_section, {"tpm": tpm})
    strategy_config["tenants"][0]["id"] = "tenant-a"
    # A ledger of its own, so that the two gateways' token windows stay apart.
    strategy_config["ledger"] = {**ledger_section, "path": str(tmp_path / "other.db")}
    if "key_prefix" in ledger_section:
        strategy_config["ledger"]["key_prefix"] = ledger_section["key_prefix"] + "s"
    strategy_gw = start_gateway(strategy_config)
    # 18-token requests: 5 fit under 100 (90), the 6th would make 108.
    assert answered_before_tpm_429(plain_gw, plain10) == 5
    # 72 tokens each once trued up: the first is admitted (18 <= 100) and counts 72; the second
    # is admitted (72 + 18 = 90) and brings the window to 144; the third is refused.
    assert answered_before_tpm_429(strategy_gw, best_of_4) == 2


def money_config(upstream: str, tmp_path: Path, ledger: dict[str, Any]) -> dict[str, Any]:
    config = base_config(upstream, tmp_path, ledger=ledger)
    config["models"] = [fake_model(name, upstream, name, supports_n=False) for name in ("flaky-1", "inflate", "garbled", "bad-usage")]
    config["models"].append(fake_model("m", upstream, "m"))
    config["tenants"][0].update({"allowed_models": ["*"], "budgets": [{"window": "day", "limit_usd": 10.0}]})
    return config


def spent(gw: RunningGateway) -> float:
    report = httpx.get(f"{gw.url}/v1/tenants/tenant-a/usage", headers={"authorization": f"Bearer {ADMIN_KEY}"}).json()
    return float(report["windows"][0]["spent_usd"])


@pytest.mark.parametrize(("model", "extra"), [
    ("flaky-1", {"n": 3}),  # one of three parallel calls fails: the two that ran are billed, then all three again
    ("inflate", {"extra_body": {"ttc": {"strategy": "best_of_n", "n": 2}}}),  # more usage than the strategy reserved
    ("bad-usage", {}),  # nonsense usage: the text is counted instead
])
def test_the_ledger_charges_what_the_response_reports(model: str, extra: dict[str, Any], fake_upstream: ThreadedServer,
                                                      start_gateway: Callable[..., RunningGateway], tmp_path: Path,
                                                      ledger_section: dict[str, Any]) -> None:
    gw = start_gateway(money_config(fake_upstream.url, tmp_path, ledger_section))
    raw = gw.client().chat.completions.with_raw_response.create(model=model, messages=MESSAGES, max_tokens=5, **extra)
    ttc = raw.parse().model_extra["ttc"]
    assert ttc["cost_usd"] > 0 and all(call["cost_usd"] >= 0 for call in ttc["calls"])
    assert spent(gw) == pytest.approx(ttc["cost_usd"], abs=1e-6)
    assert float(raw.headers["x-ttc-cost-usd"]) == pytest.approx(ttc["cost_usd"], abs=1e-8)


def test_a_garbled_upstream_is_an_upstream_error_never_a_cut_stream(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway],
                                                                     tmp_path: Path, ledger_section: dict[str, Any]) -> None:
    gw = start_gateway(money_config(fake_upstream.url, tmp_path, ledger_section))
    client = gw.client()
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="garbled", messages=MESSAGES, max_tokens=3)
    assert info.value.status_code == 502 and info.value.response.json()["error"]["code"] == "upstream_error"
    events = httpx.post(f"{gw.url}/v1/chat/completions", headers={"authorization": f"Bearer {client.api_key}"},
                        json={"model": "garbled", "messages": MESSAGES, "max_tokens": 3, "stream": True}).text
    assert events.rstrip().endswith("}") and '"code":"upstream_error"' in events  # ends in an error event
    assert spent(gw) > 0  # the streamed tokens were charged
