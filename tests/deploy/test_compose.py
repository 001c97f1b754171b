"""deploy/compose.yaml with its nginx, Prometheus and Grafana files, checked statically."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import load_config
from tests.deploy.promql import METRICS, check_expr


@pytest.fixture(scope="module")
def compose(deploy_dir: Path) -> dict[str, Any]:
    return yaml.safe_load((deploy_dir / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def gateway_names(services: dict[str, Any]) -> list[str]:
    return sorted(name for name, svc in services.items() if str(svc.get("image", "")).startswith("ttc-gateway"))


def replicas(service: dict[str, Any]) -> int:
    return int(service.get("deploy", {}).get("replicas", 1))


def command_list(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else [str(c) for c in command]


@pytest.fixture(scope="module")
def nginx_conf(deploy_dir: Path) -> str:
    text = (deploy_dir / "nginx" / "nginx.conf").read_text()
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())  # drop comments


# --------------------------------------------------------------------------- compose


def compose_schema_errors(document: dict[str, Any]) -> list[str]:
    """Errors against the Compose Specification schema vendored by check-jsonschema."""
    resources = pytest.importorskip("importlib.resources")
    jsonschema = pytest.importorskip("jsonschema")
    pytest.importorskip("check_jsonschema", reason="pip install check-jsonschema (ships the compose-spec schema)")
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    errors = compose_schema_errors(compose)
    assert not errors, "\n".join(errors)


def test_compose_schema_check_can_fail(compose: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["redis"]["healthcheck"]["intervall"] = "5s"
    broken["services"]["nginx"]["depends_on"]["gateway-1"]["condition"] = "service_ready"
    assert len(compose_schema_errors(broken)) >= 2


def test_services_present(services: dict[str, Any]) -> None:
    assert {"redis", "nginx", "prometheus", "grafana"} <= set(services)
    gateways = gateway_names(services)
    assert sum(replicas(services[g]) for g in gateways) >= 2, "need at least two gateway replicas"


def test_every_service_has_a_healthcheck(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        check = svc.get("healthcheck")
        assert check and not check.get("disable"), f"{name} has no healthcheck"
        test = check["test"]
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL"), f"{name}: exec-form healthcheck expected"
        for key in ("interval", "timeout", "retries"):
            assert key in check, f"{name} healthcheck lacks {key}"


def test_gateways_build_from_the_dockerfile_and_wait_for_redis(services: dict[str, Any], deploy_dir: Path) -> None:
    for name in gateway_names(services):
        svc = services[name]
        build = svc["build"]
        context = (deploy_dir / build["context"]).resolve()
        assert (context / build["dockerfile"]).resolve() == (deploy_dir / "Dockerfile").resolve()
        assert "WITH_LOCAL_MODELS" in build.get("args", {})
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
        health = " ".join(svc["healthcheck"]["test"])
        assert "/health/" in health and "8000" in health
        command = command_list(svc)
        assert command[0] == "serve" and command[command.index("--port") + 1] == "8000"
        config_path = command[command.index("--config") + 1]
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        assert config_path in mounts, f"{name}: --config {config_path} is not mounted"
        assert (deploy_dir / mounts[config_path]).is_file()
        # SIGKILL must come after the gateway's own drain.
        grace = int(command[command.index("--graceful-timeout") + 1])
        assert int(str(svc["stop_grace_period"]).rstrip("s")) > grace
        assert "ports" not in svc, f"{name} must be reached through nginx, not published directly"


def test_redis_persists_with_aof(services: dict[str, Any]) -> None:
    redis = services["redis"]
    command = command_list(redis)
    assert command[0] == "redis-server"
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] in ("everysec", "always")
    # Budgets must never be evicted to make room.
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert any(v.split(":")[1] == "/data" for v in redis["volumes"]), "AOF needs a persistent /data volume"
    assert "ports" not in redis, "the ledger is not published to the host"
    assert "redis-cli" in " ".join(redis["healthcheck"]["test"])


def test_published_ports(services: dict[str, Any]) -> None:
    def container_ports(svc: dict[str, Any]) -> set[int]:
        return {int(str(p).rsplit(":", 1)[-1]) for p in svc.get("ports", [])}

    assert container_ports(services["nginx"]) == {8080}
    assert container_ports(services["prometheus"]) == {9090}
    assert container_ports(services["grafana"]) == {3000}
    published = [str(p).rsplit(":", 1)[0] for s in services.values() for p in s.get("ports", [])]
    assert len(published) == len(set(published)), "two services publish the same host port"


def test_gateway_config_points_at_the_compose_redis(deploy_dir: Path, services: dict[str, Any]) -> None:
    config = yaml.safe_load((deploy_dir / "config" / "config.yaml").read_text())
    url = config["ledger"]["redis_url"]
    host = re.match(r"redis://([^:/]+)", url)
    assert host and host.group(1) in services, f"{url} does not name a compose service"
    assert config["ledger"].get("fail_open", False) is False
    for model in config["models"]:
        assert model["litellm_params"]["api_key"].startswith("os.environ/"), "secrets come from the environment"
        env_name = model["litellm_params"]["api_key"].removeprefix("os.environ/")
        for name in gateway_names(services):
            assert env_name in services[name]["environment"]


def test_gateway_config_is_accepted_by_the_gateway(deploy_dir: Path) -> None:
    config = load_config(deploy_dir / "config" / "config.yaml")
    assert config.ledger is not None


# --------------------------------------------------------------------------- nginx


def nginx_upstream_servers(conf: str) -> list[str]:
    block = re.search(r"upstream\s+(\w+)\s*\{(.*?)\}", conf, re.S)
    assert block, "no upstream block"
    return re.findall(r"^\s*server\s+([^\s;]+)", block.group(2), re.M)


def test_nginx_upstreams_are_the_gateway_services(nginx_conf: str, services: dict[str, Any]) -> None:
    servers = nginx_upstream_servers(nginx_conf)
    gateways = gateway_names(services)
    assert sorted(servers) == sorted(f"{g}:8000" for g in gateways)
    upstream = re.search(r"upstream\s+(\w+)", nginx_conf).group(1)  # type: ignore[union-attr]
    assert re.search(rf"proxy_pass\s+http://{upstream}\s*;", nginx_conf)


def test_nginx_is_sse_friendly(nginx_conf: str) -> None:
    def directive(name: str) -> list[str]:
        return [v.strip() for v in re.findall(rf"^\s*{name}\s+([^;]+);", nginx_conf, re.M)]

    assert directive("proxy_buffering") == ["off"]
    assert directive("proxy_http_version") == ["1.1"]
    assert 'Connection ""' in " ".join(directive("proxy_set_header")), "upstream keepalive needs an empty Connection"
    assert directive("keepalive") and int(directive("keepalive")[0]) > 0
    read_timeout = directive("proxy_read_timeout")[0]
    assert int(read_timeout.rstrip("s")) >= 300, "streams and test-time compute run for minutes"
    listen = directive("listen")
    assert listen == ["8080"]
    assert nginx_conf.count("{") == nginx_conf.count("}")


def test_nginx_health_endpoint_matches_compose(nginx_conf: str, services: dict[str, Any]) -> None:
    path = re.search(r"location\s*=\s*(/nginx-health)", nginx_conf)
    assert path and path.group(1) in " ".join(services["nginx"]["healthcheck"]["test"])


def test_upstream_parser_can_fail() -> None:
    conf = "upstream u {\n server gateway-1:8000;\n server gateway-3:8000;\n}\n"
    assert nginx_upstream_servers(conf) != ["gateway-1:8000", "gateway-2:8000"]


# --------------------------------------------------------------------------- Prometheus


def test_prometheus_scrapes_every_gateway(deploy_dir: Path, services: dict[str, Any]) -> None:
    prom = yaml.safe_load((deploy_dir / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in prom["scrape_configs"]}
    job = jobs["ttc-gateway"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert sorted(targets) == sorted(f"{g}:8000" for g in gateway_names(services))
    mounts = [v.split(":")[1] for v in services["prometheus"]["volumes"]]
    assert "/etc/prometheus/prometheus.yml" in mounts
    # /metrics wants the gateway's token: Prometheus presents the compose default.
    token = services[gateway_names(services)[0]]["environment"]["TTC_METRICS_TOKEN"]
    assert job["authorization"] == {"type": "Bearer", "credentials": token.split(":-", 1)[1].rstrip("}")}
    config = yaml.safe_load((deploy_dir / "config" / "config.yaml").read_text())
    assert config["server"]["metrics_token"] == "os.environ/TTC_METRICS_TOKEN"


# --------------------------------------------------------------------------- Grafana


@pytest.fixture(scope="module")
def dashboard(deploy_dir: Path) -> dict[str, Any]:
    return json.loads((deploy_dir / "grafana" / "dashboards" / "ttc-gateway.json").read_text())


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def test_dashboard_structure(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] and dashboard["title"]
    panels = all_panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in panels:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24
        if panel["type"] != "row":
            assert panel["targets"], f"panel {panel['title']!r} has no query"


def test_every_promql_expression_uses_only_contract_metrics(dashboard: dict[str, Any]) -> None:
    problems = []
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            problems += check_expr(target["expr"])
    assert not problems, "\n".join(problems)


def test_dashboard_covers_what_the_issue_asks(dashboard: dict[str, Any]) -> None:
    exprs = [t["expr"] for p in all_panels(dashboard) for t in p.get("targets", [])]
    joined = "\n".join(exprs)

    def some(pattern: str) -> bool:
        return any(re.search(pattern, e) for e in exprs)

    assert some(r"sum by \(tenant\) \(rate\(ttc_requests_total"), "requests per tenant"
    assert some(r"histogram_quantile\(0\.5,.*by \(tenant, le\).*ttc_request_duration_seconds_bucket"), "p50"
    assert some(r"histogram_quantile\(0\.99,.*by \(tenant, le\).*ttc_request_duration_seconds_bucket"), "p99"
    assert some(r"by \(tenant\).*ttc_cost_usd_total"), "cost per tenant"
    assert some(r"by \(tenant, window\).*ttc_budget_remaining_usd"), "budget remaining per tenant"
    assert some(r"by \(model\).*ttc_router_decisions_total"), "routed-model share"
    assert some(r"by \(strategy\).*ttc_strategy_requests_total"), "strategy usage"
    used = {m for m in METRICS if m in joined}
    assert used == set(METRICS), f"metrics not on the dashboard: {set(METRICS) - used}"


def test_dashboard_variables_use_contract_metrics(dashboard: dict[str, Any]) -> None:
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
        assert match, query
        metric, label = match.groups()
        assert metric in METRICS and label in METRICS[metric][1]


def test_promql_checker_can_fail() -> None:
    assert check_expr('sum by (tenant) (rate(ttc_requests_total{tenant=~"$tenant"}[5m]))') == []
    assert check_expr("rate(ttc_request_total[5m])"), "a misspelt metric must be reported"
    assert check_expr("sum by (tenant) (rate(ttc_upstream_errors_total[5m]))"), "label the metric lacks"
    assert check_expr('rate(ttc_tokens_total{tenat="x"}[5m])'), "misspelt label matcher"
    assert check_expr("histogram_quantile(0.99, rate(ttc_request_duration_seconds_bucket[5m]))") == []
    assert check_expr("rate(ttc_request_duration_seconds[5m])"), "a histogram has no bare series"


def test_grafana_provisioning(deploy_dir: Path, services: dict[str, Any]) -> None:
    prov = deploy_dir / "grafana" / "provisioning"
    datasource = yaml.safe_load((prov / "datasources" / "prometheus.yaml").read_text())["datasources"][0]
    assert datasource["type"] == "prometheus"
    assert re.fullmatch(r"http://prometheus:9090/?", datasource["url"])
    provider = yaml.safe_load((prov / "dashboards" / "ttc-gateway.yaml").read_text())["providers"][0]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["grafana"]["volumes"]}
    dashboards_host_dir = mounts[provider["options"]["path"]]
    assert (deploy_dir / dashboards_host_dir / "ttc-gateway.json").is_file()
    assert mounts["/etc/grafana/provisioning"].rstrip("/") == "./grafana/provisioning"


def test_request_log_goes_to_the_compose_postgres(deploy_dir: Path, services: dict[str, Any]) -> None:
    config = yaml.safe_load((deploy_dir / "config" / "config.yaml").read_text())
    env_name = config["request_log"]["postgres_url"].removeprefix("os.environ/")
    for name in gateway_names(services):
        url = services[name]["environment"][env_name]
        host = re.match(r"postgresql://[^@]+@([^:/]+)", url)
        assert host and host.group(1) in services and "postgres" in services[host.group(1)]["image"], url
