"""deploy/helm/ttc-gateway: rendered with tests/deploy/gotemplate.py, checked against the
Kubernetes schemas (kubernetes-validate, offline) and against the gateway's own config model."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import parse_config
from tests.deploy.gotemplate import RenderedChart, TemplateError, render_chart

# Oldest Kubernetes the chart claims (Chart.yaml kubeVersion) and the newest schemas shipped.
KUBE_VERSIONS = ("1.25.0", "1.31.0")

VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "fixed-replicas": {"autoscaling": {"enabled": False}, "replicaCount": 3},
    "cluster": {"redis": {"mode": "cluster", "cluster": {"url": "redis://redis-cluster:6379"}}},
    "sentinel": {"redis": {"mode": "sentinel", "sentinel": {"url": "redis+sentinel://s-0:26379,s-1:26379/mymaster/0"}}},
    "redis-url-from-secret": {"redis": {"existingSecret": "ledger-redis", "existingSecretKey": "url"}},
    "single-sqlite": {"redis": {"mode": "none"}, "autoscaling": {"enabled": False}, "replicaCount": 1,
                      "podDisruptionBudget": {"enabled": False}},
    "everything-on": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus"}},
        "routerArtifact": {"enabled": True, "volume": {"persistentVolumeClaim": {"claimName": "ttc-router"}}},
        "config": {"router": {"artifact": "/models/router"}},
        "extraEnv": [{"name": "LOG_FORMAT", "value": "json"}],
        "podAnnotations": {"a/b": "c"},
        "nodeSelector": {"pool": "cpu"},
        "tolerations": [{"key": "k", "operator": "Exists"}],
        "imagePullSecrets": [{"name": "regcred"}],
        "secrets": {"env": {"OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": "sk-ant"}},
    },
    "existing-secrets": {"secrets": {"existingSecret": "ttc-env"}, "rollOnConfigChange": False},
    "request-log-postgres": {"requestLog": {"existingSecret": "request-log-pg", "retentionDays": 14}},
    "flywheel": {
        "requestLog": {"existingSecret": "request-log-pg"},
        "routerArtifact": {"enabled": True, "volume": {"persistentVolumeClaim": {"claimName": "ttc-router"}}},
        "config": {"router": {"artifact": "/models/router/current"}},
        "flywheel": {"enabled": True, "schedule": "30 2 * * *"},
    },
}


@pytest.fixture(scope="module")
def rendered(chart_dir: Path) -> dict[str, RenderedChart]:
    return {name: render_chart(chart_dir, values, release_name="ttc") for name, values in VARIANTS.items()}


@pytest.fixture(scope="module")
def default(rendered: dict[str, RenderedChart]) -> RenderedChart:
    return rendered["defaults"]


def container(chart: RenderedChart) -> dict[str, Any]:
    containers = chart.one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def arg_value(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def gateway_config(chart: RenderedChart) -> dict[str, Any]:
    return yaml.safe_load(chart.one("ConfigMap")["data"]["config.yaml"])


# --------------------------------------------------------------------------- schemas


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_manifests_validate_against_kubernetes_schemas(
    rendered: dict[str, RenderedChart], variant: str, kube_version: str
) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    checked = 0
    for manifest in rendered[variant].manifests:
        if manifest["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: no schema ships offline; checked structurally below
        try:
            kv.validate(manifest, kube_version, strict=True)
        except kv.ValidationError as error:
            pytest.fail(f"{variant}: {manifest['kind']} invalid for Kubernetes {kube_version}: {error}")
        checked += 1
    assert checked >= 4


def test_schema_validation_can_fail() -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    bad = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "x"},
           "spec": {"minAvailabel": 1}}  # misspelt field: only strict mode notices
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, KUBE_VERSIONS[-1], strict=True)


def test_expected_objects(rendered: dict[str, RenderedChart]) -> None:
    kinds = sorted(m["kind"] for m in rendered["defaults"].manifests)
    assert kinds == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Secret", "Service"]
    assert "ServiceMonitor" in {m["kind"] for m in rendered["everything-on"].manifests}
    assert not rendered["existing-secrets"].find("Secret")
    assert not rendered["single-sqlite"].find("HorizontalPodAutoscaler")
    names = {m["metadata"]["name"] for m in rendered["defaults"].manifests}
    assert names == {"ttc-ttc-gateway"}
    for manifest in rendered["defaults"].manifests:
        labels = manifest["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "ttc"
        assert len(labels["helm.sh/chart"]) <= 63


def test_release_name_containing_the_chart_name_is_not_repeated(chart_dir: Path) -> None:
    chart = render_chart(chart_dir, release_name="ttc-gateway")
    assert chart.one("Deployment")["metadata"]["name"] == "ttc-gateway"


# --------------------------------------------------------------------------- Deployment


def test_probes_hit_the_health_endpoints(default: RenderedChart) -> None:
    c = container(default)
    port_names = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert port_names == {"http": 8000}
    assert c["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    assert c["startupProbe"]["httpGet"]["path"] == "/health/live"


def test_termination_grace_outlasts_prestop_and_drain(rendered: dict[str, RenderedChart]) -> None:
    for name, chart in rendered.items():
        pod = chart.one("Deployment")["spec"]["template"]["spec"]
        c = pod["containers"][0]
        graceful = int(arg_value(c["args"], "--graceful-timeout"))
        pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
        assert pre_stop[0] == "sleep", "the slim image has coreutils sleep"
        assert pod["terminationGracePeriodSeconds"] > graceful + int(pre_stop[1]), name


def test_graceful_timeout_follows_values(chart_dir: Path) -> None:
    chart = render_chart(chart_dir, {"gracefulTimeoutSeconds": 120, "preStopSleepSeconds": 5})
    pod = chart.one("Deployment")["spec"]["template"]["spec"]
    assert arg_value(pod["containers"][0]["args"], "--graceful-timeout") == "120"
    assert pod["terminationGracePeriodSeconds"] == 140


def test_serve_command_and_config_mount(default: RenderedChart) -> None:
    c = container(default)
    args = c["args"]
    assert args[0] == "serve" and arg_value(args, "--host") == "0.0.0.0" and arg_value(args, "--port") == "8000"
    config_path = Path(arg_value(args, "--config"))
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["config"]["mountPath"] == str(config_path.parent)
    assert "subPath" not in mounts["config"], "subPath mounts never see ConfigMap updates"
    volumes = {v["name"]: v for v in default.one("Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == default.one("ConfigMap")["metadata"]["name"]
    assert config_path.name in default.one("ConfigMap")["data"]
    assert c["envFrom"] == [{"secretRef": {"name": default.one("Secret")["metadata"]["name"]}}]


def test_pod_runs_as_the_image_user_with_a_read_only_root(default: RenderedChart) -> None:
    pod = default.one("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # USER in deploy/Dockerfile
    c = pod["containers"][0]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    writable = {m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")}
    assert {"/tmp", "/home/ttc/.cache", "/var/lib/ttc"} <= writable


def test_checksum_annotations_roll_pods_on_config_change(chart_dir: Path, default: RenderedChart) -> None:
    annotations = default.one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    config_sum, secret_sum = annotations["checksum/config"], annotations["checksum/secret"]
    assert re.fullmatch(r"[0-9a-f]{64}", config_sum) and re.fullmatch(r"[0-9a-f]{64}", secret_sum)
    changed = render_chart(chart_dir, {"config": {"admin_key_hash": "sha256:" + "0" * 64}})
    changed_ann = changed.one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert changed_ann["checksum/config"] != config_sum
    assert changed_ann["checksum/secret"] == secret_sum
    again = render_chart(chart_dir).one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert again["checksum/config"] == config_sum, "checksums must be deterministic"
    key = render_chart(chart_dir, {"secrets": {"env": {"OPENAI_API_KEY": "rotated"}}})
    assert key.one("Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/secret"] != secret_sum


def test_rollout_never_reduces_capacity(default: RenderedChart) -> None:
    strategy = default.one("Deployment")["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


def test_replicas_owned_by_hpa_or_values(rendered: dict[str, RenderedChart]) -> None:
    assert "replicas" not in rendered["defaults"].one("Deployment")["spec"], "the HPA owns the count"
    assert rendered["fixed-replicas"].one("Deployment")["spec"]["replicas"] == 3


# --------------------------------------------------------------------------- HPA, PDB, Service


def test_hpa_targets_the_deployment(default: RenderedChart) -> None:
    hpa = default.one("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    ref = hpa["spec"]["scaleTargetRef"]
    assert ref == {"apiVersion": "apps/v1", "kind": "Deployment", "name": default.one("Deployment")["metadata"]["name"]}
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    # CPU utilisation is relative to requests, so the container must request CPU.
    assert container(default)["resources"]["requests"]["cpu"]


def test_pdb_and_service_select_the_pods(default: RenderedChart) -> None:
    pod_labels = default.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    selector = default.one("Deployment")["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    pdb = default.one("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    assert pdb["spec"]["minAvailable"] < default.one("HorizontalPodAutoscaler")["spec"]["minReplicas"], (
        "a PDB that allows no disruption blocks node drains"
    )
    service = default.one("Service")
    assert service["spec"]["selector"] == selector
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_service_monitor_scrapes_metrics(rendered: dict[str, RenderedChart]) -> None:
    chart = rendered["everything-on"]
    monitor = chart.one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"] == chart.one("Service")["spec"]["selector"]
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] == chart.one("Service")["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"


def test_router_artifact_volume(rendered: dict[str, RenderedChart]) -> None:
    chart = rendered["everything-on"]
    pod = chart.one("Deployment")["spec"]["template"]["spec"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "router-artifact")
    volume = next(v for v in pod["volumes"] if v["name"] == "router-artifact")
    assert mount["readOnly"] is True and volume["persistentVolumeClaim"]["claimName"] == "ttc-router"
    assert gateway_config(chart)["router"]["artifact"] == mount["mountPath"]


# --------------------------------------------------------------------------- ledger / Redis


def test_ledger_settings_per_redis_mode(rendered: dict[str, RenderedChart]) -> None:
    assert gateway_config(rendered["defaults"])["ledger"] == {
        "redis_url": "redis://ttc-redis-master:6379/0", "fail_open": False}
    assert gateway_config(rendered["cluster"])["ledger"] == {
        "redis_url": "redis://redis-cluster:6379", "cluster": True, "fail_open": False}
    assert gateway_config(rendered["sentinel"])["ledger"]["redis_url"].startswith("redis+sentinel://")
    assert gateway_config(rendered["single-sqlite"])["ledger"] == {
        "path": "/var/lib/ttc/ttc-ledger.db", "fail_open": False}


def test_redis_url_from_an_existing_secret(rendered: dict[str, RenderedChart]) -> None:
    chart = rendered["redis-url-from-secret"]
    assert gateway_config(chart)["ledger"]["redis_url"] == "os.environ/TTC_REDIS_URL"
    env = {e["name"]: e for e in container(chart)["env"]}
    assert env["TTC_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "ledger-redis", "key": "url"}
    assert "TTC_REDIS_URL" not in container(rendered["defaults"]).get("env", [])


def test_secrets_stay_out_of_the_configmap(rendered: dict[str, RenderedChart]) -> None:
    chart = rendered["everything-on"]
    secret = chart.one("Secret")
    assert secret["stringData"] == {"OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": "sk-ant",
                                    "TTC_METRICS_TOKEN": "metrics-demo-change-me"}
    config_text = chart.one("ConfigMap")["data"]["config.yaml"]
    assert "sk-test" not in config_text and "metrics-demo-change-me" not in config_text
    assert "os.environ/OPENAI_API_KEY" in config_text


def test_metrics_need_the_token_the_service_monitor_presents(rendered: dict[str, RenderedChart]) -> None:
    chart = rendered["everything-on"]
    assert gateway_config(chart)["server"]["metrics_token"] == "os.environ/TTC_METRICS_TOKEN"
    (endpoint,) = chart.one("ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["authorization"] == {"type": "Bearer", "credentials": {"name": chart.one("Secret")["metadata"]["name"], "key": "TTC_METRICS_TOKEN"}}
    assert "TTC_METRICS_TOKEN" in chart.one("Secret")["stringData"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"redis": {"mode": "memcached"}}, "redis.mode must be"),
        ({"redis": {"mode": "none"}}, "one replica only"),
        ({"redis": {"mode": "none"}, "autoscaling": {"enabled": False}, "replicaCount": 2}, "one replica only"),
        ({"redis": {"mode": "cluster"}}, "redis.cluster.url is required"),
        ({"redis": {"url": ""}}, "redis.url is required"),
        ({"config": {"ledger": {"redis_url": "redis://x"}}}, "not .Values.config.ledger"),
        ({"routerArtifact": {"enabled": True}}, "routerArtifact.volume is required"),
        ({"workers": 0}, "workers must be at least 1"),
    ],
)
def test_bad_values_fail_the_render(chart_dir: Path, values: dict[str, Any], message: str) -> None:
    with pytest.raises(TemplateError, match=re.escape(message)):
        render_chart(chart_dir, values)


@pytest.mark.parametrize("variant", ["defaults", "cluster", "single-sqlite", "everything-on", "redis-url-from-secret"])
def test_rendered_config_is_accepted_by_the_gateway(rendered: dict[str, RenderedChart], variant: str) -> None:
    parsed = parse_config(gateway_config(rendered[variant]), source=f"chart[{variant}]")
    assert parsed.ledger.fail_open is False
    if variant == "cluster":
        assert parsed.ledger.cluster is True


def values_schema_errors(chart_dir: Path, overrides: dict[str, Any]) -> list[str]:
    """What Helm checks against values.schema.json before rendering (install, template, lint)."""
    import json

    import jsonschema

    from tests.deploy.gotemplate import deep_merge

    schema = json.loads((chart_dir / "values.schema.json").read_text())
    values = deep_merge(yaml.safe_load((chart_dir / "values.yaml").read_text()), overrides)
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(values)]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_values_match_the_values_schema(chart_dir: Path, variant: str) -> None:
    assert values_schema_errors(chart_dir, VARIANTS[variant]) == []


@pytest.mark.parametrize(
    "values",
    [
        {"replicaCoutn": 3},  # a typo is caught, not ignored
        {"redis": {"mode": "memcached"}},
        {"redis": {"url": "http://redis:6379"}},
        {"workers": 0},
        {"image": {"tag": "latest"}},
        {"config": {"ledger": {}}},
        {"redis": {"failOpen": "no"}},
    ],
)
def test_values_schema_rejects_bad_values(chart_dir: Path, values: dict[str, Any]) -> None:
    assert values_schema_errors(chart_dir, values)


def test_values_defaults_are_safe(chart_dir: Path) -> None:
    values = yaml.safe_load((chart_dir / "values.yaml").read_text())
    assert values["redis"]["failOpen"] is False, "fail-closed is the default"
    assert values["redis"]["mode"] == "standalone"
    assert values["replicaCount"] >= 2 and values["autoscaling"]["minReplicas"] >= 2
    assert values["image"]["tag"] in ("", None) or values["image"]["tag"] != "latest"


def test_request_log_settings_and_postgres_url_from_a_secret(rendered: dict[str, RenderedChart]) -> None:
    assert gateway_config(rendered["defaults"])["request_log"] == {"enabled": True, "retention_days": 30}
    chart = rendered["request-log-postgres"]
    section = gateway_config(chart)["request_log"]
    assert section == {"enabled": True, "retention_days": 14, "postgres_url": "os.environ/TTC_REQUEST_LOG_URL"}
    parse_config(gateway_config(chart))  # the gateway accepts what the chart writes
    env = {e["name"]: e for e in container(chart)["env"]}
    assert env["TTC_REQUEST_LOG_URL"]["valueFrom"]["secretKeyRef"] == {"name": "request-log-pg", "key": "postgres-url"}
    assert "TTC_REQUEST_LOG_URL" not in {e["name"] for e in container(rendered["defaults"]).get("env", [])}


def test_flywheel_cronjob_exports_the_log_and_runs_one_round(rendered: dict[str, RenderedChart], chart_dir: Path) -> None:
    from router.lab.flywheel import FlywheelConfig

    assert not rendered["defaults"].find("CronJob")
    chart = rendered["flywheel"]
    job = chart.one("CronJob")
    assert job["spec"]["schedule"] == "30 2 * * *" and job["spec"]["concurrencyPolicy"] == "Forbid"
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    script = pod["containers"][0]["args"][0]
    assert "ttc requests export --config /etc/ttc/config.yaml" in script
    assert "ttc router flywheel --config /etc/ttc/flywheel.yaml" in script
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert not mounts["router-artifact"].get("readOnly")  # it promotes into the volume
    assert {v["name"]: v for v in pod["volumes"]}["router-artifact"] == {
        "name": "router-artifact", "persistentVolumeClaim": {"claimName": "ttc-router"}}
    flywheel = yaml.safe_load(chart.one("ConfigMap")["data"]["flywheel.yaml"])
    config = FlywheelConfig.model_validate(flywheel)  # the file the job's command reads is one the command accepts
    assert str(config.artifact) == gateway_config(chart)["router"]["artifact"]
    with pytest.raises(TemplateError, match="request log"):
        render_chart(chart_dir, {"flywheel": {"enabled": True}, "routerArtifact": {"enabled": True, "volume": {"emptyDir": {}}}})
