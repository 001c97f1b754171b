"""`ttc router label` spends through the ledger and never past `--budget-usd` (exact-cost proof:
the fake upstream bills exactly max_tokens of output, so every charge is known in advance)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gateway.accounting import budget_scope
from gateway.commands.router import GatewayRouterBackend
from gateway.config import load_config
from gateway.ledger import make_ledger
from router.lab.cli import make_app
from testkit.servers import ThreadedServer
from tests.gateway.conftest import base_config

runner = CliRunner()


def write_log(path: Path, n: int) -> None:
    with path.open("w") as handle:
        for i in range(n):
            handle.write(json.dumps({
                "request_id": f"req-{i}", "time": 1.0 + i, "tenant": "tenant-a", "key_id": "k", "endpoint": "chat",
                "requested_model": "auto", "served_model": "fast", "status": "ok", "explored": False,
                "propensity": 0.95, "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 2e-5, "latency_s": 0.1,
                "log_content": True, "messages": [{"role": "user", "content": f"What is {i} plus {i}?"}],
                "response_text": f"{2 * i}"}) + "\n")


def tenant_spent(config_path: Path) -> float:
    config = load_config(config_path)
    tenant = next(t for t in config.tenants if t.id == "tenant-a")

    async def read() -> float:
        ledger = make_ledger(config.ledger)
        try:
            usage = await ledger.usage(budget_scope(tenant, None))
        finally:
            await ledger.close()
        return next(w.spent_usd for w in usage.windows if w.window == "day")

    return asyncio.run(read())


@pytest.mark.parametrize("budget", [0.0005, 0.002])
def test_labelling_stops_at_the_budget_and_the_ledger_agrees(fake_upstream: ThreadedServer, tmp_path: Path,
                                                            budget: float) -> None:
    config = base_config(fake_upstream.url, tmp_path)
    config["tenants"][0]["allowed_models"] = ["fast", "via-litellm", "private"]
    config_path = tmp_path / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(config))
    write_log(tmp_path / "log.jsonl", 20)
    out = tmp_path / "labels.jsonl"
    app = make_app(GatewayRouterBackend())
    res = runner.invoke(app, ["label", "--config", str(config_path), "--from-log", str(tmp_path / "log.jsonl"),
                              "--judge", "via-litellm", "--models", "fast,private", "--tenant", "tenant-a",
                              "--budget-usd", str(budget), "--sample", "20", "--max-tokens", "32",
                              "--concurrency", "3", "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads(out.with_suffix(".report.json").read_text())
    spent = tenant_spent(config_path)
    # Per call at most (prompt + margin) * $1/M + 32 * $2/M, i.e. well under $0.0001: the cap binds.
    assert report["stopped_for_budget"] is True
    assert 0 < spent <= budget
    assert spent > budget - 0.0002  # it used the money it had, stopping only when the next hold did not fit
    assert report["spent_usd"] == pytest.approx(spent, abs=1e-9)
    assert report["calls"] > 0


def test_label_calls_only_models_the_tenant_may_use(fake_upstream: ThreadedServer, tmp_path: Path) -> None:
    config_path = tmp_path / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(base_config(fake_upstream.url, tmp_path)))  # tenant-a: fast, via-litellm
    write_log(tmp_path / "log.jsonl", 2)
    res = runner.invoke(make_app(GatewayRouterBackend()), [
        "label", "--config", str(config_path), "--from-log", str(tmp_path / "log.jsonl"), "--judge", "via-litellm",
        "--models", "fast,private", "--tenant", "tenant-a", "--budget-usd", "1", "--out", str(tmp_path / "o.jsonl")])
    assert res.exit_code == 2 and "['private']" in res.output and "tenant-a" in res.output
    assert tenant_spent(config_path) == 0.0


def test_label_refuses_an_unknown_tenant(fake_upstream: ThreadedServer, tmp_path: Path) -> None:
    config_path = tmp_path / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(base_config(fake_upstream.url, tmp_path)))
    write_log(tmp_path / "log.jsonl", 2)
    res = runner.invoke(make_app(GatewayRouterBackend()), [
        "label", "--config", str(config_path), "--from-log", str(tmp_path / "log.jsonl"), "--judge", "fast",
        "--tenant", "nobody", "--budget-usd", "1", "--out", str(tmp_path / "o.jsonl")])
    assert res.exit_code == 2 and "nobody" in res.output


def test_label_reads_feedback_users_left_in_the_request_log(fake_upstream: ThreadedServer, tmp_path: Path) -> None:
    from gateway.commands.requests import open_store
    from gateway.requestlog.row import Feedback, LogRow, row_data

    config_path = tmp_path / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(base_config(fake_upstream.url, tmp_path)))
    write_log(tmp_path / "log.jsonl", 3)
    store = open_store(str(config_path))
    try:
        store.setup()
        rows = [LogRow.model_validate(json.loads(line)) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
        store.write([row_data(r) for r in rows])
        assert store.put_feedback("tenant-a", "req-1", Feedback(score=0.25, time=5.0))
    finally:
        store.close()
    found = GatewayRouterBackend().stored_feedback(config_path, [("tenant-a", "req-0"), ("tenant-a", "req-1"),
                                                                 ("tenant-b", "req-1")])
    assert found == {"req-1": 0.25}  # req-0 has none; tenant-b may not see tenant-a's request


def test_pairwise_label_needs_a_reference_candidate_and_spends_nothing_without_one(fake_upstream: ThreadedServer,
                                                                                tmp_path: Path) -> None:
    config_path = tmp_path / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(base_config(fake_upstream.url, tmp_path)))
    write_log(tmp_path / "log.jsonl", 2)
    res = runner.invoke(make_app(GatewayRouterBackend()), [
        "label", "--config", str(config_path), "--from-log", str(tmp_path / "log.jsonl"), "--judge", "via-litellm",
        "--models", "fast", "--tenant", "tenant-a", "--budget-usd", "1", "--grading", "pairwise",
        "--out", str(tmp_path / "o.jsonl")])
    assert res.exit_code == 2 and "--reference" in res.output
    assert tenant_spent(config_path) == 0.0
