"""`ttc router onboard --tenant`: the probe calls are held and charged on the tenant's ledger account,
capped by `--budget-usd`, on models it may use (exact-cost proof: the fake upstream bills exactly
max_tokens of output)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gateway.commands.router import GatewayRouterBackend
from router.api import load_router
from router.lab.cli import make_app
from router.lab.train import TrainConfig, train_router
from testkit.servers import ThreadedServer
from tests.gateway.conftest import base_config, fake_model
from tests.gateway.test_label_budget import tenant_spent
from tests.router.test_onboarding import PRICES, TASK_MODELS, _featurizer, _prompts, _rows

runner = CliRunner()


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onboard-charged") / "art"
    train_router(_rows(TASK_MODELS), out, PRICES, TrainConfig(featurizer="static", cv_folds=3, probes=24, token_bag="off"),
                 featurizer=_featurizer())
    return out


def _setup(upstream: str, tmp_path: Path) -> tuple[Path, Path]:
    config = base_config(upstream, tmp_path)
    config["models"].append(fake_model("newcomer", upstream))
    config["tenants"][0]["allowed_models"].append("newcomer")
    config_path = tmp_path / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(config))
    references = tmp_path / "references.jsonl"
    references.write_text("".join(json.dumps({"prompt": prompt, "answer": "tok"}) + "\n" for _, prompt in _prompts()))
    return config_path, references


def test_probe_calls_are_charged_to_the_tenant_within_the_budget(fake_upstream: ThreadedServer, artifact: Path, tmp_path: Path) -> None:
    config_path, references = _setup(fake_upstream.url, tmp_path)
    res = runner.invoke(make_app(GatewayRouterBackend()), [
        "onboard", "--artifact", str(artifact), "--model", "newcomer", "--config", str(config_path), "--out", str(tmp_path / "a2"),
        "--references", str(references), "--grader", "contains", "--tenant", "tenant-a", "--budget-usd", "0.01",
        "--max-tokens", "16"])
    assert res.exit_code == 0, res.output
    calls = json.loads(res.stdout)["probe_calls"]
    spent = tenant_spent(config_path)
    assert calls["calls"] == 24 and calls["failed"] == calls["skipped_for_budget"] == 0
    assert 0 < spent <= 0.01 and calls["charged_usd"] == pytest.approx(spent, abs=1e-12)
    assert calls["spent_usd"] == pytest.approx(spent, abs=1e-9)  # the run's own sum agrees with the ledger
    assert load_router(tmp_path / "a2").models[-1] == "newcomer"


def test_a_budget_too_small_stops_the_calls_and_a_model_the_tenant_may_not_use_is_refused(
        fake_upstream: ThreadedServer, artifact: Path, tmp_path: Path) -> None:
    config_path, references = _setup(fake_upstream.url, tmp_path)
    args = ["onboard", "--artifact", str(artifact), "--model", "newcomer", "--config", str(config_path),
            "--out", str(tmp_path / "a2"), "--references", str(references), "--grader", "contains", "--max-tokens", "16"]
    app = make_app(GatewayRouterBackend())
    refused = runner.invoke(app, [*args, "--tenant", "tenant-b", "--budget-usd", "1"])
    assert refused.exit_code == 2 and "may not use 'newcomer'" in refused.output
    capped = runner.invoke(app, [*args, "--tenant", "tenant-a", "--budget-usd", "0.0002"])
    assert tenant_spent(config_path) <= 0.0002
    assert capped.exit_code != 0 or json.loads(capped.stdout)["probe_calls"]["calls"] < 24
    no_cap = runner.invoke(app, [*args, "--tenant", "tenant-a"])
    assert no_cap.exit_code == 2 and "--budget-usd" in no_cap.output
