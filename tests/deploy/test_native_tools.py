"""nginx's and Prometheus' own checkers, where the Debian packages are installed
(`apt-get install nginx prometheus`); skipped elsewhere."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

# Grafana's variables, replaced by values that make each query plain PromQL.
GRAFANA_VARS = {"$__rate_interval": "5m", "$__range": "1h", "$__interval": "1m", "$tenant": ".*"}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed")
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60)


def nginx_test(conf_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # Compose service names do not resolve here, and nginx resolves upstream hosts at load.
    conf_text = re.sub(r"server gateway-(\d+):8000", r"server 127.0.0.\1:8000", conf_text)
    conf = tmp_path / "nginx.conf"
    conf.write_text(conf_text)
    return run(tool("nginx"), "-t", "-q", "-c", str(conf), "-e", str(tmp_path / "error.log"))


def test_nginx_accepts_the_config(deploy_dir: Path, tmp_path: Path) -> None:
    result = nginx_test((deploy_dir / "nginx" / "nginx.conf").read_text(), tmp_path)
    assert result.returncode == 0, result.stderr


def test_nginx_check_can_fail(deploy_dir: Path, tmp_path: Path) -> None:
    text = (deploy_dir / "nginx" / "nginx.conf").read_text().replace("proxy_buffering off;", "proxy_buffering of;")
    assert nginx_test(text, tmp_path).returncode != 0


def test_promtool_accepts_the_scrape_config(deploy_dir: Path) -> None:
    result = run(tool("promtool"), "check", "config", str(deploy_dir / "prometheus" / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def dashboard_rules(deploy_dir: Path) -> dict:
    dashboard = json.loads((deploy_dir / "grafana" / "dashboards" / "ttc-gateway.json").read_text())
    rules = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for var, value in GRAFANA_VARS.items():
                expr = expr.replace(var, value)
            assert "$" not in expr, f"unhandled Grafana variable in {expr}"
            rules.append({"record": f"ttc:panel{panel['id']}:{target['refId']}", "expr": expr})
    return {"groups": [{"name": "dashboard", "rules": rules}]}


def promtool_rules(rules: dict, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    return run(tool("promtool"), "check", "rules", str(path))


def test_every_dashboard_query_parses_as_promql(deploy_dir: Path, tmp_path: Path) -> None:
    rules = dashboard_rules(deploy_dir)
    assert len(rules["groups"][0]["rules"]) >= 10
    result = promtool_rules(rules, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promql_parse_check_can_fail(tmp_path: Path) -> None:
    bad = {"groups": [{"name": "g", "rules": [{"record": "x:y", "expr": "sum by (tenant (rate(ttc_requests_total[5m]))"}]}]}
    assert promtool_rules(bad, tmp_path).returncode != 0
