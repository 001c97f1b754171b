"""A configured model the router artifact does not know: cold-start prior, flagged, kept out of `auto`
unless a routing profile allows unonboarded models. Over HTTP with the OpenAI SDK."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import yaml

from testkit.servers import ThreadedServer
from tests.gateway.conftest import TENANT_KEY, base_config, fake_model

REPO = Path(__file__).resolve().parents[2]
# Trained on the two local models' real outcomes (gateway/assets/router-local/README.md).
ARTIFACT = REPO / "gateway" / "assets" / "router-local"
KNOWN = ("smollm2-135m", "gemma3-270m")


def _config(fake_upstream: ThreadedServer, tmp_path: Path) -> Path:
    config = base_config(fake_upstream.url, tmp_path)
    # The newcomer is free: a large cost weight picks it whenever it is allowed to be picked.
    newcomer = fake_model("newcomer", fake_upstream.url, "fake", tier="high")
    newcomer["price"] = {"input_per_1m": 0.0, "output_per_1m": 0.0}
    config["models"] = [fake_model(name, fake_upstream.url, "fake") for name in KNOWN] + [newcomer]
    config["tenants"][0]["allowed_models"] = ["*"]
    config["router"] = {"artifact": str(ARTIFACT), "profiles": {"open": {"allow_unonboarded": True}}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _router_info(client: openai.OpenAI, model: str) -> dict[str, Any]:
    body = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "What is 7 times 6?"}],
                                          max_tokens=4, extra_body={"ttc": {"cost_weight": 1e6}})
    return dict(body.model_extra["ttc"]["router"])


def test_unonboarded_model_is_flagged_and_left_out_of_auto_unless_the_profile_allows(fake_upstream: ThreadedServer, tmp_path: Path) -> None:
    from gateway.app import create_app
    from gateway.runtime import ConfigSource

    with ThreadedServer(create_app(ConfigSource(str(_config(fake_upstream, tmp_path))))) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=TENANT_KEY, max_retries=0)
        plain = _router_info(client, "auto")
        flags = {c["model"]: c["onboarded"] for c in plain["candidates"]}
        assert flags == {"smollm2-135m": True, "gemma3-270m": True, "newcomer": False}
        assert plain["model"] in KNOWN  # never the unonboarded model, even free
        # Tier `high`: the prior is the strongest known model's prediction on this prompt.
        quality = {c["model"]: c["predicted_quality"] for c in plain["candidates"]}
        assert quality["newcomer"] == max(quality["smollm2-135m"], quality["gemma3-270m"])
        opened = _router_info(client, "auto:open")
        assert opened["model"] == "newcomer"
        assert {c["model"]: c["onboarded"] for c in opened["candidates"]}["newcomer"] is False
