"""`ttc serve` reloads keys, tenants and models on SIGHUP without dropping in-flight requests."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from pathlib import Path

import openai
import pytest
import yaml

from gateway.auth import hash_key
from testkit.servers import ProcessServer, ThreadedServer, free_port, ttc_command
from tests.gateway.conftest import base_config, fake_model

pytestmark = pytest.mark.slow

OLD_KEY, NEW_KEY = "sk-old-key", "sk-new-key"


def test_sighup_revokes_a_key_and_keeps_in_flight_requests(fake_upstream: ThreadedServer, tmp_path: Path) -> None:
    config = base_config(fake_upstream.url, tmp_path)
    config["tenants"][0]["api_key_hashes"] = [hash_key(OLD_KEY)]
    config["models"].append(fake_model("slow", fake_upstream.url, "slow-2500"))
    config["tenants"][0]["allowed_models"] = ["*"]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    with ProcessServer(ttc_command("serve", "--config", str(path), "--port", str(port)), port, log_path=tmp_path / "serve.log") as server:
        old = openai.OpenAI(base_url=server.url + "/v1", api_key=OLD_KEY, max_retries=0)
        new = openai.OpenAI(base_url=server.url + "/v1", api_key=NEW_KEY, max_retries=0)
        assert old.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}], max_tokens=2).choices
        with pytest.raises(openai.AuthenticationError):
            new.models.list()

        in_flight: dict[str, object] = {}

        def slow_request() -> None:
            try:
                in_flight["result"] = old.chat.completions.create(model="slow", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
            except Exception as error:  # recorded and asserted below
                in_flight["error"] = error

        worker = threading.Thread(target=slow_request)
        worker.start()
        time.sleep(0.8)  # the slow request is now waiting on the upstream
        config["tenants"][0]["api_key_hashes"] = [hash_key(NEW_KEY)]
        config["models"].append(fake_model("added-later", fake_upstream.url))
        path.write_text(yaml.safe_dump(config))
        assert server.process is not None
        server.process.send_signal(signal.SIGHUP)

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                new.models.list()
                break
            except openai.AuthenticationError:
                time.sleep(0.1)
        assert "added-later" in {m.id for m in new.models.list()}
        with pytest.raises(openai.AuthenticationError):
            old.models.list()
        worker.join(30)
        assert "error" not in in_flight, in_flight.get("error")
        assert in_flight["result"].choices[0].message.content == "tok tok"  # type: ignore[attr-defined]
        assert server.process.poll() is None  # still serving


def test_invalid_config_on_reload_keeps_the_running_one(fake_upstream: ThreadedServer, tmp_path: Path) -> None:
    config = base_config(fake_upstream.url, tmp_path)
    config["tenants"][0]["api_key_hashes"] = [hash_key(OLD_KEY)]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    with ProcessServer(ttc_command("serve", "--config", str(path), "--port", str(port)), port) as server:
        path.write_text("models: [this is: not valid")
        assert server.process is not None
        server.process.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=OLD_KEY, max_retries=0)
        assert client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}], max_tokens=2).choices


async def test_a_bad_escalation_model_on_reload_keeps_the_running_config(
        fake_upstream: ThreadedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.runtime import ConfigSource, GatewayRuntime
    from strategies.escalation import FEATURES, EscalationModel

    config = base_config(fake_upstream.url, tmp_path)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    runtime = GatewayRuntime(ConfigSource(str(path)))
    await runtime.start()
    try:
        running = runtime.state
        config["strategies"] = {"escalation": str(tmp_path / "missing.json")}
        path.write_text(yaml.safe_dump(config))
        assert await runtime.reload("test") is False
        assert runtime.state is running
        # The watcher does not retry a rejected edit every interval: it waits for the next one.
        reloads: list[str] = []

        async def counted_reload(reason: str = "SIGHUP") -> bool:
            reloads.append(reason)
            return False

        monkeypatch.setattr(runtime, "reload", counted_reload)
        watcher = asyncio.create_task(runtime._watch(0.01))
        await asyncio.sleep(0.2)
        assert reloads == []
        path.write_text(yaml.safe_dump({**config, "strategies": {}}))
        await asyncio.sleep(0.2)
        watcher.cancel()
        assert reloads and reloads[0] == "file changed"
        monkeypatch.undo()
        width = len(FEATURES)
        EscalationModel(model="fast", features=list(FEATURES), mean=[0.0] * width, scale=[1.0] * width,
                        coef=[0.0] * width, intercept=0.0).save(tmp_path / "escalation.json")
        config["strategies"] = {"escalation": str(tmp_path / "escalation.json")}
        path.write_text(yaml.safe_dump(config))
        assert await runtime.reload("test") is True
        assert runtime.state.escalation_model.model == "fast"
    finally:
        await runtime.close()
