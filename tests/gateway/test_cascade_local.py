"""`cascade` end to end: an escalation model fitted here on real SmolLM2 answers, served by the
gateway in front of the two local models, through the OpenAI SDK and the embedded ledger."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from testkit.servers import ThreadedServer
from tests.gateway.conftest import TENANT_KEY

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
RECORDED = REPO / "tests" / "fixtures" / "smollm2_mawps_singleop_16.jsonl"
CHEAP, STRONG = "smollm2-135m", "gemma3-270m"
LEDGER_ROUNDING = 1.1e-6
MATH = [{"role": "user", "content": "Tom has 3 apples and buys 4 more. How many apples does he have?"}]


def recorded_outcomes(path: Path) -> int:
    """One recorded SmolLM2 answer per problem as outcome rows (one per problem: CV folds never share a problem)."""
    rows = []
    for line in RECORDED.read_text().splitlines():
        problem = json.loads(line)
        sample = problem["samples"][0]
        rows.append({"prompt": problem["prompt"], "model": CHEAP, "score": float(sample["correct"]),
                     "response": sample["text"]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return len(rows)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("cascade")
    recorded_outcomes(home / "outcomes.jsonl")
    fitted = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "strategies", "fit-escalation", "--data", str(home / "outcomes.jsonl"),
         "--model", CHEAP, "--out", str(home / "escalation.json")],
        check=True, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert "out-of-fold AUC" in fitted.stdout

    from gateway.app import create_app
    from gateway.auth import hash_key
    from gateway.defaults import default_config_data
    from gateway.runtime import ConfigSource

    config = default_config_data("unused")
    config["tenants"][0]["api_key_hashes"] = [hash_key(TENANT_KEY)]
    config["ledger"] = {"path": str(home / "ledger.db")}
    config["strategies"] = {"escalation": str(home / "escalation.json")}
    (home / "config.yaml").write_text(yaml.safe_dump(config))
    with ThreadedServer(create_app(ConfigSource(str(home / "config.yaml")))) as server:
        yield server.url


def spent(url: str) -> float:
    usage = httpx.get(f"{url}/v1/tenants/demo/usage", headers={"authorization": f"Bearer {TENANT_KEY}"}).json()
    return float(usage["windows"][0]["spent_usd"])


def ask(url: str, escalate_below: float) -> tuple[dict, float]:
    client = openai.OpenAI(base_url=url + "/v1", api_key=TENANT_KEY, max_retries=0, timeout=300)
    raw = client.chat.completions.with_raw_response.create(
        model=CHEAP, messages=MATH, max_tokens=24,
        extra_body={"ttc": {"strategy": "cascade", "strong_model": STRONG, "escalate_below": escalate_below}})
    body = raw.parse()
    assert body.choices[0].message.content.strip()
    return body.model_extra["ttc"], float(raw.headers["x-ttc-cost-usd"])


def test_fixture_has_right_and_wrong_answers(tmp_path: Path) -> None:
    n = recorded_outcomes(tmp_path / "rows.jsonl")
    scores = [json.loads(line)["score"] for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert n > 100 and 10 < sum(scores) < n - 10


def test_a_doubtful_answer_is_escalated_to_the_strong_model_and_both_are_billed(gateway: str) -> None:
    before = spent(gateway)
    ttc, cost = ask(gateway, escalate_below=1.0)  # every answer is doubtful at this threshold
    decision = ttc["cascade"]
    assert decision["escalated"] is True and decision["first_model"] == CHEAP and decision["escalation_fitted_on"] == CHEAP
    assert 0.0 < decision["p_right"] < 1.0
    assert [(c["role"], c["model"]) for c in ttc["calls"]] == [("draft", CHEAP), ("escalation", STRONG)]
    assert ttc["strategy"]["name"] == "cascade" and ttc["strategy"]["n"] == 2
    assert cost == pytest.approx(sum(c["cost_usd"] for c in ttc["calls"]))
    # The usage endpoint reports 6 decimals; each call alone costs more than that rounding.
    assert min(c["cost_usd"] for c in ttc["calls"]) > 2 * LEDGER_ROUNDING
    assert spent(gateway) - before == pytest.approx(cost, abs=LEDGER_ROUNDING)


def test_a_convincing_answer_is_kept_with_one_call(gateway: str) -> None:
    before = spent(gateway)
    ttc, cost = ask(gateway, escalate_below=0.0)
    assert ttc["cascade"]["escalated"] is False
    assert [(c["role"], c["model"]) for c in ttc["calls"]] == [("draft", CHEAP)]
    assert spent(gateway) - before == pytest.approx(cost, abs=LEDGER_ROUNDING)


def test_streamed_cascade_sends_the_strong_answer_and_the_decision(gateway: str) -> None:
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=TENANT_KEY, max_retries=0, timeout=300)
    chunks = list(client.chat.completions.create(
        model=CHEAP, messages=MATH, max_tokens=24, stream=True, stream_options={"include_usage": True},
        extra_body={"ttc": {"strategy": "cascade", "strong_model": STRONG, "escalate_below": 1.0}}))
    ttc = chunks[-1].model_extra["ttc"]
    assert ttc["cascade"]["escalated"] is True and [c["model"] for c in ttc["calls"]] == [CHEAP, STRONG]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
    assert chunks[-1].usage.completion_tokens == sum(c["completion_tokens"] for c in ttc["calls"])
