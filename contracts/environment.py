"""Process-wide environment defaults, applied once by each entry point (the `ttc` CLI, the app
factory, `python -m router|strategies`, the test session) rather than as a side effect of
importing some module."""

from __future__ import annotations

import os

OFFLINE_DEFAULTS: dict[str, str] = {
    # litellm would otherwise fetch its model price map at import; prices come from our config.
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    # The embedder ships in a package; never reach for a model hub at run time.
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    # One thread per embedding: on a few cores, a pool per request makes concurrent routing
    # slower, not faster.
    "TTC_ROUTER_THREADS": "1",
}


def apply_environment_defaults() -> None:
    """Set each default the operator has not set; never overrides an explicit value."""
    for name, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(name, value)
