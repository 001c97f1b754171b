"""Gateway fixtures: a fake OpenAI-compatible provider and gateways built from YAML configs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from gateway.app import create_app
from gateway.auth import hash_key
from gateway.runtime import ConfigSource
from testkit.fake_upstream import FakeUpstream
from testkit.servers import ThreadedServer

TENANT_KEY = "sk-test-tenant-a"
OTHER_KEY = "sk-test-tenant-b"
ADMIN_KEY = "sk-test-admin"


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[ThreadedServer]:
    app = FakeUpstream()
    with ThreadedServer(app, health_path="/_requests") as server:
        server.app = app  # type: ignore[attr-defined]
        yield server


def fake_model(name: str, upstream_url: str, upstream_model: str | None = None, **extra: Any) -> dict[str, Any]:
    params = {"model": f"openai/{upstream_model or name}", "api_base": upstream_url + "/v1", "api_key": "fake"}
    params.update(extra.pop("litellm_params", {}))
    return {"name": name, "litellm_params": params, "price": {"input_per_1m": 1.0, "output_per_1m": 2.0},
            "max_output_tokens": 64, **extra}


def base_config(upstream_url: str, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "models": [
            fake_model("fast", upstream_url),
            fake_model("private", upstream_url),
            fake_model("via-litellm", upstream_url, "fast", litellm_params={"fast_path": "off"}),
        ],
        "tenants": [
            {"id": "tenant-a", "api_key_hashes": [hash_key(TENANT_KEY)], "allowed_models": ["fast", "via-litellm"],
             "budgets": [{"window": "day", "limit_usd": 10.0}]},
            {"id": "tenant-b", "api_key_hashes": [hash_key(OTHER_KEY)], "allowed_models": ["private"]},
        ],
        "ledger": {"path": str(tmp_path / "ledger.db")},
        "admin_key_hash": hash_key(ADMIN_KEY),
        "server": {"watch_interval_s": 0},
    }
    config.update(overrides)
    return config


class RunningGateway:
    def __init__(self, server: ThreadedServer, config_path: Path, app: Any) -> None:
        self.server = server
        self.url = server.url
        self.config_path = config_path
        self.app = app

    def client(self, key: str = TENANT_KEY, **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, **kwargs)

    def async_client(self, key: str = TENANT_KEY, **kwargs: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, **kwargs)


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], RunningGateway]]:
    servers: list[ThreadedServer] = []

    def start(config: dict[str, Any]) -> RunningGateway:
        path = tmp_path / f"config-{len(servers)}.yaml"
        path.write_text(yaml.safe_dump(config))
        app = create_app(ConfigSource(str(path)))
        server = ThreadedServer(app).__enter__()
        servers.append(server)
        return RunningGateway(server, path, app)

    yield start
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture
def gateway(fake_upstream: ThreadedServer, start_gateway: Callable[[dict[str, Any]], RunningGateway], tmp_path: Path) -> RunningGateway:
    return start_gateway(base_config(fake_upstream.url, tmp_path))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    from testkit.redis_server import RedisServer

    with RedisServer() as server:
        yield server.url


_ledger_counter = iter(range(10**6))


@pytest.fixture(params=["sqlite", "redis"])
def ledger_section(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """A `ledger:` config section private to one test, for each backend."""
    if request.param == "sqlite":
        return {"path": str(tmp_path / "ledger.db")}
    url = request.getfixturevalue("redis_url")
    # `path` too: the request log's SQLite file (and spools) go beside it, not into the working directory.
    return {"redis_url": url, "key_prefix": f"gw{next(_ledger_counter)}", "path": str(tmp_path / "ledger.db")}
