"""Config parsing: the documented minimal form, LiteLLM's spelling, and readable errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gateway.auth import hash_key, new_key
from gateway.config import ConfigError, load_config, parse_config

MINIMAL = """
models:
  - name: smollm2-135m
    litellm_params: {model: local/smollm2-135m}     # any litellm model string; api_base / api_key optional
    price: {input_per_1m: 0.05, output_per_1m: 0.10}
    max_output_tokens: 512
tenants:
  - id: demo
    api_key_hashes: ["sha256:%s"]
    allowed_models: ["*"]
    budgets: [{window: day, limit_usd: 1.0}]        # used by the ledger issue
ledger: {redis_url: "redis://127.0.0.1:6379/0"}    # omit redis_url: embedded SQLite at ledger.path (default ./ttc-ledger.db)
admin_key_hash: "sha256:%s"
""" % ("a" * 64, "b" * 64)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_minimal_documented_form_is_accepted_exactly(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    model = config.models[0]
    assert model.name == "smollm2-135m" and model.litellm_params.model == "local/smollm2-135m"
    assert model.price.output_per_1m == 0.10 and model.max_output_tokens == 512
    assert config.tenants[0].budgets[0].window == "day"
    assert config.ledger.redis_url == "redis://127.0.0.1:6379/0"
    assert config.admin_key_hash == "sha256:" + "b" * 64


def test_ledger_path_defaults_to_embedded_sqlite(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL.replace('ledger: {redis_url: "redis://127.0.0.1:6379/0"}', "")))
    assert config.ledger.redis_url is None and config.ledger.path == "./ttc-ledger.db"


def test_litellm_style_model_list_loads(tmp_path: Path) -> None:
    text = """
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/OPENAI_API_KEY
      rpm: 100
    model_info: {id: abc}
litellm_settings: {drop_params: true}
general_settings: {master_key: sk-1234}
"""
    config = load_config(write(tmp_path, text))
    assert [m.name for m in config.models] == ["gpt-4o"]
    assert config.models[0].litellm_params.api_key == "os.environ/OPENAI_API_KEY"


def test_env_secrets_are_resolved_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse_config({"models": [{"name": "m", "litellm_params": {"model": "openai/x", "api_key": "os.environ/TTC_TEST_SECRET"}}]})
    monkeypatch.setenv("TTC_TEST_SECRET", "s3cret")
    assert config.models[0].litellm_params.resolved()["api_key"] == "s3cret"
    monkeypatch.delenv("TTC_TEST_SECRET")
    with pytest.raises(ConfigError, match="TTC_TEST_SECRET"):
        config.models[0].litellm_params.resolved()


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["models"][0]["price"].update(input_per_1m="cheap"), "models.0.price.input_per_1m"),
        (lambda d: d["models"][0].update(max_output_tokens=0), "models.0.max_output_tokens"),
        (lambda d: d["tenants"][0]["budgets"][0].update(window="fortnight"), "tenants.0.budgets.0.window"),
        (lambda d: d["tenants"][0].update(api_key_hashes=["plaintext-key"]), "tenants.0.api_key_hashes"),
        (lambda d: d["models"][0].update(colour="blue"), "models.0.colour"),
        (lambda d: d["models"][0].update(fallbacks=["nope"]), "unknown fallbacks"),
        (lambda d: d.update(models=d["models"] * 2), "duplicate model names"),
        (lambda d: d.update(strategies={"reward_model": "nope"}), "strategies.reward_model 'nope' is not a configured chat model"),
        (lambda d: d["tenants"][0].update(strategy={"reward_model": "nope"}), "tenant 'demo' strategy.reward_model"),
    ],
)
def test_errors_name_the_bad_field(tmp_path: Path, mutate: object, expected: str) -> None:
    data = yaml.safe_load(MINIMAL)
    mutate(data)  # type: ignore[operator]
    path = write(tmp_path, yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)


def test_invalid_yaml_and_missing_file_are_readable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(write(tmp_path, "models: [unclosed"))
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.yaml")


def test_keys_new_prints_a_key_and_its_hash() -> None:
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "keys", "new"], capture_output=True, text=True, check=True).stdout
    lines = dict(line.split(":", 1) for line in out.strip().splitlines())
    key, key_hash = lines["key"].strip(), lines["hash"].strip()
    assert hash_key(key) == key_hash
    assert key != new_key()[0]


def test_serve_refuses_a_bad_config_with_a_readable_message(tmp_path: Path) -> None:
    data = yaml.safe_load(MINIMAL)
    data["models"][0]["price"]["input_per_1m"] = -1
    path = write(tmp_path, yaml.safe_dump(data))
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "models.0.price.input_per_1m" in result.stderr
    assert "Traceback" not in result.stderr
