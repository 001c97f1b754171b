"""A running gateway picks up a router that `ttc router promote` swapped in by rename."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from contracts.outcomes import write_outcomes
from router.artifact import read_manifest
from router.lab.cli import make_app
from testkit.servers import ThreadedServer
from tests.gateway.conftest import RunningGateway, base_config, fake_model
from tests.router.flywheel_support import MODELS, train_small, two_kind_rows


def served_version(gateway: RunningGateway) -> str:
    body = gateway.client().chat.completions.create(model="auto", messages=[{"role": "user", "content": "add 2 and 3"}],
                                                    max_tokens=2)
    return str(body.model_extra["ttc"]["router"]["version"])


def test_a_promoted_router_is_hot_reloaded(fake_upstream: ThreadedServer, tmp_path: Path,
                                           start_gateway: Callable[[dict[str, Any]], RunningGateway]) -> None:
    bad = train_small(two_kind_rows(60, seed=1, inverted=True), tmp_path / "bad")
    good = train_small(two_kind_rows(60, seed=1), tmp_path / "good")
    write_outcomes(tmp_path / "heldout.jsonl", two_kind_rows(60, seed=2))
    serving = tmp_path / "serving"
    shutil.copytree(bad, serving)
    config = base_config(fake_upstream.url, tmp_path)
    config["models"] = [fake_model(name, fake_upstream.url, "fake") for name in MODELS]
    config["tenants"][0]["allowed_models"] = ["*"]
    config["router"] = {"artifact": str(serving)}
    config["server"]["watch_interval_s"] = 0.3
    gateway = start_gateway(config)
    assert served_version(gateway) == read_manifest(bad).version

    res = CliRunner().invoke(make_app(), ["promote", "--challenger", str(good), "--target", str(serving),
                                          "--data", str(tmp_path / "heldout.jsonl"), "--n-boot", "300"])
    assert res.exit_code == 0, res.output
    deadline, seen = time.monotonic() + 30, ""
    while time.monotonic() < deadline:
        seen = served_version(gateway)
        if seen == read_manifest(good).version:
            break
        time.sleep(0.3)
    assert seen == read_manifest(good).version
