"""Prompt featurization: an embedding plus cheap text statistics.

Two embedders are supported:

* ``minilm`` (``sentence-transformers``): all-MiniLM-L6-v2 through torch,
  cached on disk. Best for training-time quality, ~15 ms per uncached prompt.
* ``static`` (``static-distilled``): token vectors distilled from MiniLM,
  averaged. Sub-millisecond, for the gateway's latency budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from router.features.aux import AuxRegressor
from router.features.sentence import DEFAULT_MODEL, SentenceEmbedder
from router.features.static import StaticEmbedder
from router.features.text import TextFeatures

FEATURIZERS = ("minilm", "static", "minilm-only", "static-only")


class Embedder(Protocol):
    kind: str

    @property
    def dim(self) -> int: ...

    def transform(self, prompts: Sequence[str], progress: bool = False) -> np.ndarray: ...

    def spec(self) -> dict[str, Any]: ...


class PromptFeaturizer:
    """Concatenates an embedding with optional text statistics and auxiliary predictions.

    Columns: [embedding | text statistics | aux regressor outputs]. Auxiliary
    regressors (router.features.aux) read the embedding and text columns.
    """

    def __init__(self, embedder: Embedder, text_features: bool = True, aux: Sequence[AuxRegressor] = ()) -> None:
        self.embedder = embedder
        self.text_features = text_features
        self._text = TextFeatures()
        self.aux: list[AuxRegressor] = list(aux)

    @property
    def embedding_dim(self) -> int:
        """Leading columns of `transform` that hold the L2-normalized embedding."""
        return int(self.embedder.dim)

    def fit(self, prompts: Sequence[str]) -> PromptFeaturizer:
        if isinstance(self.embedder, StaticEmbedder):
            self.embedder.fit(prompts)
        return self

    def transform_base(self, prompts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Embedding and text statistics: the input of the auxiliary regressors."""
        emb = self.embedder.transform(prompts, progress)
        if not self.text_features:
            return emb
        return np.hstack([emb, self._text.transform(prompts)]).astype(np.float32)

    def transform(self, prompts: Sequence[str], progress: bool = False) -> np.ndarray:
        base = self.transform_base(prompts, progress)
        if not self.aux:
            return base
        return np.hstack([base, *[reg.transform(base) for reg in self.aux]]).astype(np.float32)

    def spec(self) -> dict[str, Any]:
        return {"embedder": self.embedder.spec(), "text_features": self.text_features}

    def save(self, directory: Path) -> dict[str, Any]:
        saver = getattr(self.embedder, "save", None)
        emb_spec = saver(directory) if saver else self.embedder.spec()
        aux_specs = []
        for reg in self.aux:
            name = f"aux_{reg.name}.npz"
            reg.save(directory / name)
            aux_specs.append({"name": reg.name, "file": name, "targets": reg.target_names})
        return {"embedder": emb_spec, "text_features": self.text_features,
                "text_feature_names": list(self._text.spec()["features"]) if self.text_features else [],
                "aux": aux_specs}

    @classmethod
    def load(cls, directory: Path, spec: dict[str, Any], embedding_cache: bool = False) -> PromptFeaturizer:
        """`embedding_cache` enables the on-disk cache (offline jobs); serving leaves it off
        so that live traffic never writes to disk."""
        emb = spec["embedder"]
        embedder: Embedder
        if emb["kind"] == StaticEmbedder.kind:
            embedder = StaticEmbedder.load(directory, emb)
        elif emb["kind"] == SentenceEmbedder.kind:
            embedder = SentenceEmbedder(emb["model"], use_cache=embedding_cache)
        else:
            raise ValueError(f"unknown embedder kind {emb['kind']!r}")
        aux = [AuxRegressor.load(directory / _plain_name(a["file"])) for a in spec.get("aux", [])]
        return cls(embedder, bool(spec.get("text_features", True)), aux)


def _plain_name(name: str) -> str:
    """Artifact files are referenced by bare names: a manifest cannot point outside its directory."""
    if Path(name).name != name or name.startswith("."):
        raise ValueError(f"artifact file name {name!r} must be a plain file name")
    return name


def build_featurizer(name: str = "minilm", embedding_model: str = DEFAULT_MODEL) -> PromptFeaturizer:
    """`minilm`/`static` add text statistics; `*-only` use the embedding alone."""
    if name not in FEATURIZERS:
        raise ValueError(f"unknown featurizer {name!r}; choose one of {FEATURIZERS}")
    base, _, only = name.partition("-")
    embedder: Embedder = (
        SentenceEmbedder(embedding_model) if base == "minilm" else StaticEmbedder.distilled(embedding_model)
    )
    return PromptFeaturizer(embedder, text_features=not only)
