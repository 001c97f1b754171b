"""`model: auto` routing with a learned artifact, trained here from real local-model outcomes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from testkit.servers import ProcessServer, ThreadedServer, free_port, ttc_command
from tests.gateway.conftest import TENANT_KEY, base_config, fake_model

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "local_outcomes.jsonl"
LOCAL_MODELS = ("smollm2-135m", "gemma3-270m")


def train_artifact(data: Path, out: Path, extra: list[str] | None = None) -> dict[str, Any]:
    summary = out.parent / f"{out.name}.json"
    subprocess.run([sys.executable, "-m", "gateway.cli", "router", "train", "--data", str(data), "--out", str(out),
                    "--cv-folds", "3", "--json", str(summary), *(extra or [])], check=True, cwd=REPO, capture_output=True, timeout=600)
    return json.loads(summary.read_text())


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("router") / "artifact"
    train_artifact(FIXTURE, out)
    return out


def fake_local_models_config(fake_upstream: ThreadedServer, tmp_path: Path, artifact: Path) -> dict[str, Any]:
    """The two local models' names, answered by the fake upstream, routed by `artifact`."""
    config = base_config(fake_upstream.url, tmp_path)
    config["models"] = [fake_model(name, fake_upstream.url, "fake") for name in LOCAL_MODELS]
    config["tenants"][0]["allowed_models"] = ["*"]
    config["router"] = {"artifact": str(artifact)}
    return config


def routed_config(fake_upstream: ThreadedServer, tmp_path: Path, artifact: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(fake_local_models_config(fake_upstream, tmp_path, artifact)))
    return path


def test_fixture_is_real_local_model_outcomes() -> None:
    rows = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]
    assert {r["model"] for r in rows} == set(LOCAL_MODELS)
    assert all(r["prompt_tokens"] > 0 and r["completion_tokens"] > 0 and r["cost_usd"] > 0 for r in rows)
    assert 0 < sum(r["score"] for r in rows) < len(rows)  # some right, some wrong: something to learn


def test_auto_routes_between_the_local_models(artifact: Path, tmp_path: Path) -> None:

    from gateway.app import create_app
    from gateway.defaults import default_config_data
    from gateway.auth import hash_key
    from gateway.runtime import ConfigSource

    config = default_config_data("unused")
    config["tenants"][0]["api_key_hashes"] = [hash_key(TENANT_KEY)]
    config["ledger"] = {"path": str(tmp_path / "ledger.db")}
    config["router"] = {"artifact": str(artifact)}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with ThreadedServer(create_app(ConfigSource(str(path)))) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=TENANT_KEY, max_retries=0, timeout=300)
        assert "auto" in {m.id for m in client.models.list()}
        chosen = set()
        for cost_weight in (0.0, 1000.0):
            raw = client.chat.completions.with_raw_response.create(
                model="auto", messages=[{"role": "user", "content": "Tom has 3 apples and buys 5 more. How many apples?"}],
                max_tokens=8, extra_body={"ttc": {"cost_weight": cost_weight}})
            body = raw.parse()
            router = body.model_extra["ttc"]["router"]
            assert router["model"] in LOCAL_MODELS and body.model == router["model"]
            assert {c["model"] for c in router["candidates"]} == set(LOCAL_MODELS)
            for candidate in router["candidates"]:
                assert 0.0 <= candidate["predicted_quality"] <= 1.0 and candidate["expected_cost_usd"] > 0
            assert router["version"] and router["latency_ms"] >= 0
            assert raw.headers["x-ttc-router-model"] == router["model"]
            assert body.choices[0].message.content.strip()
            chosen.add(router["model"])
            if cost_weight > 0:
                cheapest = min(router["candidates"], key=lambda c: c["expected_cost_usd"])["model"]
                assert router["model"] == cheapest  # a huge cost weight must pick the cheapest
        # a profile that does not exist is a 404 like any unknown model
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="auto:nope", messages=[{"role": "user", "content": "hi"}], max_tokens=2)


def test_two_replicas_each_notice_a_new_artifact(artifact: Path, fake_upstream: ThreadedServer, tmp_path: Path) -> None:
    live = tmp_path / "live-artifact"
    shutil.copytree(artifact, live)
    first_version = json.loads((live / "manifest.json").read_text())["version"]
    config = fake_local_models_config(fake_upstream, tmp_path, live)
    config["server"]["watch_interval_s"] = 0.5
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))

    def version_via(url: str) -> str:
        client = openai.OpenAI(base_url=url + "/v1", api_key=TENANT_KEY, max_retries=0)
        body = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "What is 7 times 6?"}], max_tokens=2)
        return str(body.model_extra["ttc"]["router"]["version"])

    with ExitStack() as stack:
        servers = []
        for _ in range(2):
            port = free_port()
            server = ProcessServer(ttc_command("serve", "--config", str(path), "--port", str(port)), port, log_path=tmp_path / f"gw{port}.log")
            stack.callback(server.stop)
            servers.append(server.launch())
        for server in servers:
            server.wait_ready()
        assert [version_via(s.url) for s in servers] == [first_version, first_version]

        # Ship a new artifact over the live one, in place, as a deploy would: here the same
        # estimators under a new version (training a second one would only slow the test down).
        new = tmp_path / "new-artifact"
        shutil.copytree(live, new)
        manifest = json.loads((new / "manifest.json").read_text())
        second_version = manifest["version"] + "-next"
        manifest["version"] = second_version
        (new / "manifest.json").write_text(json.dumps(manifest))
        for item in new.iterdir():
            shutil.copy2(item, live / item.name)

        deadline = time.monotonic() + 60
        seen: list[str] = []
        while time.monotonic() < deadline:
            seen = [version_via(s.url) for s in servers]
            if seen == [second_version, second_version]:
                break
            time.sleep(0.5)
        assert seen == [second_version, second_version]


def test_collect_runs_real_local_models_through_the_upstream_layer(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "What is 2 + 3? Answer with the number.", "answer": "5", "id": "p1"}) + "\n")
    config = {"models": [
        {"name": "smollm2-135m", "litellm_params": {"model": "local/smollm2-135m"}, "price": {"input_per_1m": 0.05, "output_per_1m": 0.10}},
        {"name": "gemma3-270m", "litellm_params": {"model": "local/gemma3-270m"}, "price": {"input_per_1m": 0.10, "output_per_1m": 0.20}},
    ]}
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    out = tmp_path / "outcomes.jsonl"
    result = subprocess.run([*ttc_command("router", "collect", "--config", str(config_path), "--prompts", str(prompts),
                                          "--out", str(out), "--max-tokens", "12")], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["model"] for r in rows} == set(LOCAL_MODELS)
    for row in rows:
        price_in, price_out = (0.05, 0.10) if row["model"] == "smollm2-135m" else (0.10, 0.20)
        assert row["score"] in (0.0, 1.0)
        assert row["cost_usd"] == pytest.approx((row["prompt_tokens"] * price_in + row["completion_tokens"] * price_out) / 1e6)


@pytest.mark.parametrize("stream", [False, True])
def test_auto_with_a_strategy_predicts_once_and_says_which_router(stream: bool, artifact: Path, fake_upstream: ThreadedServer,
                                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.app import create_app
    from gateway.runtime import ConfigSource
    from router.api import LearnedRouter

    path = routed_config(fake_upstream, tmp_path, artifact)
    predicted: list[int] = []
    with ThreadedServer(create_app(ConfigSource(str(path)))) as server:
        # Counted from here: loading the artifact warms the embedder with one prediction.
        original = LearnedRouter.predict
        monkeypatch.setattr(LearnedRouter, "predict", lambda self, prompts: predicted.append(len(prompts)) or original(self, prompts))
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=TENANT_KEY, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "What is 7 times 6?"}], max_tokens=4, stream=stream,
            extra_body={"ttc": {"strategy": "best_of_n", "n": 2}})
        if stream:
            chunks = list(raw.parse())
            ttc = next(c.model_extra["ttc"] for c in chunks if (c.model_extra or {}).get("ttc"))
        else:
            ttc = raw.parse().model_extra["ttc"]
        assert ttc["strategy"]["name"] == "best_of_n" and len(ttc["calls"]) == 2
        assert raw.headers["x-ttc-router-model"] == ttc["router"]["model"] in LOCAL_MODELS
        assert raw.headers["x-ttc-router-version"] == str(ttc["router"]["version"])
    assert predicted == [1]  # one prompt, predicted once: routing's prediction is the difficulty


def test_auto_routes_through_the_responses_and_messages_apis(artifact: Path, fake_upstream: ThreadedServer, tmp_path: Path) -> None:
    import anthropic

    from gateway.app import create_app
    from gateway.runtime import ConfigSource

    path = routed_config(fake_upstream, tmp_path, artifact)
    with ThreadedServer(create_app(ConfigSource(str(path)))) as server:
        responses = openai.OpenAI(base_url=server.url + "/v1", api_key=TENANT_KEY, max_retries=0).responses.with_raw_response.create(
            model="auto", input="What is 7 times 6?", max_output_tokens=3)
        reply = responses.parse()
        assert reply.model in LOCAL_MODELS and reply.model_extra["ttc"]["router"]["model"] == reply.model
        assert responses.headers["x-ttc-router-model"] == reply.model
        messages = anthropic.Anthropic(base_url=server.url, api_key=TENANT_KEY, max_retries=0).messages.with_raw_response.create(
            model="auto", max_tokens=3, messages=[{"role": "user", "content": "What is 7 times 6?"}],
            extra_body={"ttc": {"strategy": "best_of_n", "n": 2}})
        message = messages.parse()
        assert message.model in LOCAL_MODELS and messages.headers["x-ttc-router-model"] == message.model
        assert message.model_extra["ttc"]["strategy"]["name"] == "best_of_n"
