"""End to end on the real local models: a router trained without gemma3-270m onboards it from the probe
set, live through the upstream layer, and a running gateway hot-reloads the new artifact and routes
`auto` to it."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from testkit.servers import ThreadedServer, ttc_command
from tests.gateway.conftest import TENANT_KEY, base_config

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
KNOWN, NEW = "smollm2-135m", "gemma3-270m"


def _run(*args: str) -> str:
    result = subprocess.run(ttc_command("router", *args), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _local_models() -> list[dict[str, Any]]:
    # The new model is the cheaper one here, so a large cost weight picks it once the router knows it.
    return [
        {"name": KNOWN, "litellm_params": {"model": f"local/{KNOWN}"}, "price": {"input_per_1m": 0.10, "output_per_1m": 0.20}},
        {"name": NEW, "litellm_params": {"model": f"local/{NEW}"}, "price": {"input_per_1m": 0.05, "output_per_1m": 0.10}},
    ]


def _route(client: openai.OpenAI) -> dict[str, Any]:
    body = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "What is the capital of Italy?"}],
                                          max_tokens=6, extra_body={"ttc": {"cost_weight": 1e6}})
    assert body.choices[0].message.content is not None
    return dict(body.model_extra["ttc"]["router"])


def test_a_left_out_local_model_is_onboarded_from_probes_and_routed_to(fake_upstream: ThreadedServer, tmp_path: Path) -> None:
    from gateway.app import create_app
    from gateway.runtime import ConfigSource

    rows = [json.loads(line) for line in (FIXTURES / "local_outcomes.jsonl").read_text().splitlines() if line.strip()]
    without_new = tmp_path / "train.jsonl"
    without_new.write_text("".join(json.dumps(r) + "\n" for r in rows if r["model"] == KNOWN))
    live = tmp_path / "artifact"
    # Probes among the capitals prompts, whose reference answers the fixture has.
    _run("train", "--data", str(without_new), "--out", str(live), "--featurizer", "static", "--token-bag", "off",
         "--cv-folds", "3", "--probes", "6", "--probe-references", str(FIXTURES / "capitals_labeled.jsonl"),
         "--probe-grader", "contains")
    probes_file = tmp_path / "probes.jsonl"
    _run("probes", "--artifact", str(live), "--out", str(probes_file))
    probes = [json.loads(line) for line in probes_file.read_text().splitlines()]
    assert len(probes) == 6 and all(p["answer"] and p["grader"] == "contains" for p in probes)

    config = base_config(fake_upstream.url, tmp_path)
    config["models"] = _local_models()
    config["tenants"][0]["allowed_models"] = ["*"]
    config["router"] = {"artifact": str(live)}
    config["server"]["watch_interval_s"] = 0.5
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))

    with ThreadedServer(create_app(ConfigSource(str(config_path)))) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=TENANT_KEY, max_retries=0, timeout=300)
        before = _route(client)
        assert {c["model"]: c["onboarded"] for c in before["candidates"]} == {KNOWN: True, NEW: False}
        assert before["model"] == KNOWN  # the cheaper newcomer is not offered to `auto` yet

        # Onboard in place: the probes run live on gemma3-270m through the upstream layer.
        answers = tmp_path / "probe_outcomes.jsonl"
        report = json.loads(_run("onboard", "--artifact", str(live), "--model", NEW, "--config", str(config_path),
                                 "--out", str(live), "--max-tokens", "12", "--save-outcomes", str(answers)))
        graded = [json.loads(line) for line in answers.read_text().splitlines()]
        assert len(graded) == 6 and all(r["model"] == NEW and r["cost_usd"] > 0 for r in graded)
        assert report["on_probes"] == 6 and report["probe_calls"]["calls"] == 6

        deadline = time.monotonic() + 60
        after = before
        while time.monotonic() < deadline and after["version"] != report["version"]:
            time.sleep(0.5)
            after = _route(client)
        assert after["version"] == report["version"]
        assert {c["model"]: c["onboarded"] for c in after["candidates"]} == {KNOWN: True, NEW: True}
        assert after["model"] == NEW
