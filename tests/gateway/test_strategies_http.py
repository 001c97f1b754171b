"""Test-time-compute strategies through the gateway: accounting, degradation, errors, streaming."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import httpx
import openai
import pytest

from testkit.servers import ThreadedServer
from tests.gateway.conftest import ADMIN_KEY, RunningGateway, base_config, fake_model

MESSAGES = [{"role": "user", "content": "What is 2 plus 2?"}]


@pytest.fixture
def gw(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path) -> RunningGateway:
    config = base_config(fake_upstream.url, tmp_path)
    config["models"].append(fake_model("no-n", fake_upstream.url, "no-n-model", supports_n=False))
    config["tenants"][0]["allowed_models"] = ["*"]
    return start_gateway(config)


def spent(gw: RunningGateway) -> float:
    return httpx.get(f"{gw.url}/v1/tenants/tenant-a/usage", headers={"authorization": f"Bearer {ADMIN_KEY}"}).json()["windows"][0]["spent_usd"]


@pytest.mark.parametrize("model", ["fast", "no-n"])
def test_best_of_n_accounts_for_every_call(gw: RunningGateway, model: str) -> None:
    raw = gw.client().chat.completions.with_raw_response.create(model=model, messages=MESSAGES, max_tokens=3,
                                                                extra_body={"ttc": {"strategy": "best_of_n", "n": 4, "selector": "majority"}})
    body = raw.parse()
    ttc = body.model_extra["ttc"]
    assert ttc["strategy"]["name"] == "best_of_n" and ttc["strategy"]["n"] == 4 and ttc["strategy"]["degraded"] is False
    assert len(ttc["calls"]) == 4
    assert body.usage.completion_tokens == sum(c["completion_tokens"] for c in ttc["calls"]) == 12
    assert body.usage.prompt_tokens == sum(c["prompt_tokens"] for c in ttc["calls"])
    assert float(raw.headers["x-ttc-cost-usd"]) == pytest.approx(sum(c["cost_usd"] for c in ttc["calls"]))
    assert spent(gw) == pytest.approx(float(raw.headers["x-ttc-cost-usd"]), abs=1e-6)
    assert body.choices[0].message.content == "tok tok tok"


def test_tight_budget_degrades_instead_of_refusing(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path) -> None:
    config = base_config(fake_upstream.url, tmp_path)
    config["tenants"][0].update({"allowed_models": ["*"], "budgets": [{"window": "day", "limit_usd": 0.00030}]})
    gw = start_gateway(config)
    body = gw.client().chat.completions.create(model="fast", messages=MESSAGES, max_tokens=40,
                                               extra_body={"ttc": {"strategy": "best_of_n", "n": 8}})
    strategy = body.model_extra["ttc"]["strategy"]
    assert strategy["degraded"] is True and 1 <= strategy["n"] < 8
    assert spent(gw) <= 0.00030
    # once not even one call fits: 429 insufficient_quota
    for _ in range(5):
        try:
            gw.client().chat.completions.create(model="fast", messages=MESSAGES, max_tokens=40, extra_body={"ttc": {"strategy": "best_of_n", "n": 8}})
        except openai.RateLimitError as error:
            assert error.response.json()["error"]["code"] == "insufficient_quota"
            break
    else:
        pytest.fail("the budget never ran out")
    assert spent(gw) <= 0.00030


def test_tools_run_as_single_and_say_so(gw: RunningGateway) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    body = gw.client().chat.completions.create(model="fast", messages=MESSAGES, max_tokens=2, tools=tools,
                                               extra_body={"ttc": {"strategy": "best_of_n", "n": 4}})
    strategy = body.model_extra["ttc"]["strategy"]
    assert strategy["name"] == "single" and "tools" in strategy["reason"]
    assert len(body.model_extra["ttc"]["calls"]) == 1


def test_bad_strategy_spec_is_400(gw: RunningGateway) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        gw.client().chat.completions.create(model="fast", messages=MESSAGES, extra_body={"ttc": {"strategy": "best_of_n", "selektor": "x"}})
    assert info.value.response.json()["error"]["param"] == "ttc"
    with pytest.raises(openai.BadRequestError):
        gw.client().chat.completions.create(model="fast", messages=MESSAGES, extra_body={"ttc": {"strategy": "telepathy"}})


@pytest.mark.parametrize("include_usage", [False, True])
def test_streamed_strategy_sends_the_chosen_answer_with_ttc(gw: RunningGateway, include_usage: bool) -> None:
    kwargs: dict[str, Any] = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(gw.client().chat.completions.create(model="fast", messages=MESSAGES, max_tokens=3, stream=True,
                                                      extra_body={"ttc": {"strategy": "adaptive", "n": 6}}, **kwargs))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "tok tok tok"
    ttc = chunks[-1].model_extra["ttc"]
    assert ttc["strategy"]["name"] == "adaptive"
    assert 1 <= len(ttc["calls"]) < 6  # the unanimous fake stops early
    if include_usage:
        assert chunks[-1].usage.completion_tokens == sum(c["completion_tokens"] for c in ttc["calls"])
    assert spent(gw) == pytest.approx(ttc["cost_usd"], abs=1e-6)


def test_streamed_strategy_budget_error_is_a_proper_429(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path) -> None:
    config = base_config(fake_upstream.url, tmp_path)
    config["tenants"][0].update({"allowed_models": ["*"], "budgets": [{"window": "day", "limit_usd": 0.0000001}]})
    gw = start_gateway(config)
    with pytest.raises(openai.RateLimitError):
        list(gw.client().chat.completions.create(model="fast", messages=MESSAGES, max_tokens=30, stream=True,
                                                 extra_body={"ttc": {"strategy": "best_of_n", "n": 4}}))


def test_tenant_default_strategy_applies(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path) -> None:
    config = base_config(fake_upstream.url, tmp_path)
    config["tenants"][0].update({"allowed_models": ["*"], "strategy": {"strategy": "best_of_n", "n": 3}})
    gw = start_gateway(config)
    body = gw.client().chat.completions.create(model="fast", messages=MESSAGES, max_tokens=2)
    assert body.model_extra["ttc"]["strategy"]["name"] == "best_of_n"
    assert len(body.model_extra["ttc"]["calls"]) == 3
    plain = gw.client().chat.completions.create(model="fast", messages=MESSAGES, max_tokens=2, extra_body={"ttc": {"strategy": "single"}})
    assert plain.model_extra["ttc"]["strategy"] is None and len(plain.model_extra["ttc"]["calls"]) == 1


def test_reward_selector_grades_with_the_configured_reward_model(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path) -> None:
    config = base_config(fake_upstream.url, tmp_path)
    config["models"].append(fake_model("grader", fake_upstream.url))
    config["tenants"][0]["allowed_models"] = ["*"]
    config["strategies"] = {"reward_model": "grader"}
    gw = start_gateway(config)
    raw = gw.client().chat.completions.with_raw_response.create(model="fast", messages=MESSAGES, max_tokens=3,
                                                                extra_body={"ttc": {"strategy": "best_of_n", "n": 3, "selector": "reward"}})
    body = raw.parse()
    ttc = body.model_extra["ttc"]
    rewards = [c for c in ttc["calls"] if c["role"] == "reward"]
    assert len(rewards) == 3 and len(ttc["calls"]) == 6
    assert all(c["model"] == "grader" and c["cost_usd"] > 0 and c["completion_tokens"] > 0 for c in rewards)
    assert body.usage.prompt_tokens == sum(c["prompt_tokens"] for c in ttc["calls"])
    assert body.usage.completion_tokens == sum(c["completion_tokens"] for c in ttc["calls"])
    assert body.usage.completion_tokens > sum(c["completion_tokens"] for c in ttc["calls"] if c["role"] != "reward")
    assert float(raw.headers["x-ttc-cost-usd"]) == pytest.approx(sum(c["cost_usd"] for c in ttc["calls"]))
    assert spent(gw) == pytest.approx(float(raw.headers["x-ttc-cost-usd"]), abs=1e-6)
    # each grading request carries one candidate and the question
    graded = [r for r in httpx.get(f"{fake_upstream.url}/_requests").json() if r.get("model") == "grader"][-3:]
    assert len(graded) == 3 and all("What is 2 plus 2?" in r["messages"][-1]["content"] for r in graded)
    assert all(r["temperature"] == 0.0 for r in graded)


def test_reward_selector_without_a_reward_model_is_400_before_any_call(gw: RunningGateway, fake_upstream: ThreadedServer) -> None:
    before = len(httpx.get(f"{fake_upstream.url}/_requests").json())
    with pytest.raises(openai.BadRequestError) as info:
        gw.client().chat.completions.create(model="fast", messages=MESSAGES, max_tokens=3,
                                            extra_body={"ttc": {"strategy": "best_of_n", "n": 3, "selector": "reward"}})
    assert "reward model" in info.value.response.json()["error"]["message"]
    assert len(httpx.get(f"{fake_upstream.url}/_requests").json()) == before


def test_cascade_without_an_escalation_model_is_400_before_any_call(gw: RunningGateway, fake_upstream: ThreadedServer) -> None:
    before = len(httpx.get(f"{fake_upstream.url}/_requests").json())
    with pytest.raises(openai.BadRequestError) as info:
        gw.client().chat.completions.create(model="fast", messages=MESSAGES, max_tokens=3,
                                            extra_body={"ttc": {"strategy": "cascade", "strong_model": "private"}})
    assert "escalation model" in info.value.response.json()["error"]["message"]
    assert len(httpx.get(f"{fake_upstream.url}/_requests").json()) == before


@pytest.fixture
def cascade_gw(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path) -> RunningGateway:
    from strategies.escalation import FEATURES, EscalationModel

    width = len(FEATURES)  # an uninformative model: P(right) = 0.5 for every answer
    EscalationModel(model="fast", features=list(FEATURES), mean=[0.0] * width, scale=[1.0] * width,
                    coef=[0.0] * width, intercept=0.0).save(tmp_path / "escalation.json")
    config = base_config(fake_upstream.url, tmp_path)
    config["tenants"][0]["allowed_models"] = ["fast", "via-litellm"]
    config["strategies"] = {"escalation": str(tmp_path / "escalation.json")}
    return start_gateway(config)


@pytest.mark.parametrize(("ttc", "status", "message"), [
    ({"strong_model": "nope"}, 404, "nope"),
    ({"strong_model": "private"}, 404, "private"),  # configured, but not allowed for this tenant
    ({}, 400, "needs ttc.strong_model"),
    ({"strong_model": "fast"}, 400, "must differ"),
    ({"strong_model": "fast", "cheap_model": "via-litellm"}, 400, "fitted on answers of 'fast'"),
])
def test_a_cascade_that_could_only_fail_is_refused_before_any_call(
        cascade_gw: RunningGateway, fake_upstream: ThreadedServer, ttc: dict[str, Any], status: int, message: str) -> None:
    before = len(httpx.get(f"{fake_upstream.url}/_requests").json())
    with pytest.raises(openai.APIStatusError) as info:
        cascade_gw.client().chat.completions.create(model="fast", messages=MESSAGES, max_tokens=3,
                                                    extra_body={"ttc": {"strategy": "cascade", **ttc}})
    assert info.value.status_code == status and message in info.value.response.json()["error"]["message"]
    assert len(httpx.get(f"{fake_upstream.url}/_requests").json()) == before


def test_a_cascade_runs_through_the_gateway_and_reports_its_decision(cascade_gw: RunningGateway) -> None:
    for threshold, calls in ((0.5, ["fast"]), (0.51, ["fast", "via-litellm"])):  # P(right) is exactly 0.5
        body = cascade_gw.client().chat.completions.create(
            model="fast", messages=MESSAGES, max_tokens=3,
            extra_body={"ttc": {"strategy": "cascade", "strong_model": "via-litellm", "escalate_below": threshold}})
        ttc = body.model_extra["ttc"]
        assert [c["model"] for c in ttc["calls"]] == calls
        assert ttc["cascade"] == {"first_model": "fast", "p_right": 0.5, "escalate_below": threshold,
                                  "escalation_fitted_on": "fast", "escalated": len(calls) == 2}
