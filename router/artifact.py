"""Versioned router artifact: a directory with manifest.json plus arrays.

Layout::

    manifest.json      models, prices, featurizer spec, CV metrics, data hash, versions
    quality.npz        QualityHead arrays
    length.npz         LengthModel arrays
    static_table.npz   (static featurizer only) token vectors and SIF weights
    token_bag.npz      (static featurizers, when kept) token-bag LSA: vocabulary, idf, components
    tokenizer.json     (static featurizer only)
    probes.jsonl       (when trained with probes) the prompts a new model answers to be onboarded

Trust model: loading reads JSON and `.npz` files with `allow_pickle=False`, so
an artifact cannot execute code. The only code-like field is the featurizer
kind, which must be one of the built-in kinds.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.prices import Price

FORMAT = "ttc-router/1"
MANIFEST = "manifest.json"


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["ttc-router/1"] = FORMAT
    version: str
    created_at: str
    models: list[str]
    prices: dict[str, Price]
    featurizer: dict[str, Any]
    quality: dict[str, Any]
    length: dict[str, Any]
    cv: dict[str, Any]
    data_sha256: str
    n_train_prompts: int
    train_prompt_sha256: list[str]  # hashes of training prompts, for eval's leakage check
    # router.features.aux.aux_key of every auxiliary example (normalized text),
    # so that eval also refuses test prompts an auxiliary regressor was fit on.
    aux_prompt_sha256: list[str] = Field(default_factory=list)
    cost_scale_usd: float
    default_cost_weight: float
    libraries: dict[str, str]
    # The probe set chosen at training time (router.lab.probes), when one was: file, size, method.
    probes: dict[str, Any] | None = None
    # Models added after training from their probe outcomes alone (router.lab.onboard), with the fit's report.
    onboarded: dict[str, dict[str, Any]] = Field(default_factory=dict)


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("numpy", "scikit-learn", "torch", "sentence-transformers", "onnxruntime", "tokenizers", "litellm",
                 "pydantic"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def read_manifest(directory: Path) -> Manifest:
    path = Path(directory) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{directory} is not a router artifact (no {MANIFEST})")
    return Manifest.model_validate_json(path.read_text(encoding="utf-8"))


def write_manifest(directory: Path, manifest: Manifest) -> None:
    tmp = Path(directory) / f".{MANIFEST}.tmp"
    tmp.write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
    tmp.rename(Path(directory) / MANIFEST)  # atomic: watchers never see half a manifest


def artifact_fingerprint(directory: Path) -> str:
    """Hash of every file in the artifact; replicas compare it to notice a new artifact."""
    digest = hashlib.sha256()
    for path in sorted(Path(directory).iterdir()):
        if path.is_file() and not path.name.startswith("."):
            digest.update(path.name.encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
