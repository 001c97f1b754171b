"""The built-in config: two local models, one demo tenant, the embedded ledger.

The demo key is generated once and kept in the user's config directory, so the README's
snippets keep working across restarts.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from gateway.auth import hash_key, new_key


def config_dir() -> Path:
    base = os.environ.get("TTC_CONFIG_DIR") or os.path.join(os.environ.get("XDG_CONFIG_HOME", os.path.expanduser("~/.config")), "ttc-gateway")
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    base = os.environ.get("TTC_DATA_DIR") or os.path.join(os.environ.get("XDG_DATA_HOME", os.path.expanduser("~/.local/share")), "ttc-gateway")
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def demo_key() -> str:
    path = config_dir() / "demo-key"
    if path.exists():
        return path.read_text().strip()
    key, _ = new_key()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(key + "\n")
    tmp.chmod(0o600)
    os.replace(tmp, path)  # atomic: two workers starting together agree on one key
    return path.read_text().strip()


def default_config_data(key: str) -> dict[str, Any]:
    # Prices are nominal, not market rates: small enough to be harmless, large enough that
    # budgets and cost accounting have real numbers to work with.
    return {
        "models": [
            {
                "name": "smollm2-135m",
                "litellm_params": {"model": "local/smollm2-135m"},
                "price": {"input_per_1m": 0.05, "output_per_1m": 0.10},
                "max_output_tokens": 512,
                "timeout_s": 120,
            },
            {
                "name": "gemma3-270m",
                "litellm_params": {"model": "local/gemma3-270m"},
                "price": {"input_per_1m": 0.10, "output_per_1m": 0.20},
                "max_output_tokens": 512,
                "timeout_s": 120,
            },
        ],
        "tenants": [
            {
                "id": "demo",
                "api_key_hashes": [hash_key(key)],
                "allowed_models": ["*"],
                "budgets": [{"window": "day", "limit_usd": 1.0}],
            }
        ],
        "ledger": {"path": str(data_dir() / "ledger.db")},
        **({"router": {"artifact": str(BUILTIN_ROUTER)}} if router_available() else {}),
    }


BUILTIN_ROUTER = Path(__file__).resolve().parent / "assets" / "router-local"


def router_available() -> bool:
    """`model: auto` on the defaults needs the `router` extra: onnxruntime serves the built-in
    artifact's MiniLM, which sentence-transformers (torch) exports once."""
    return BUILTIN_ROUTER.is_dir() and all(
        importlib.util.find_spec(name) is not None for name in ("sentence_transformers", "onnxruntime"))
