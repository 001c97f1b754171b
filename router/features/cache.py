"""Disk cache for prompt embeddings, keyed by embedder id and text hash.

Embedding the full public sets takes minutes on 2 cores; every later train,
eval or bench run reads the vectors from here instead. Shards are plain .npz
files (no pickle), appended atomically, so concurrent writers never corrupt
each other: the worst case is a vector computed twice.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def default_cache_dir() -> Path:
    return Path(os.environ.get("TTC_ROUTER_CACHE", Path.home() / ".cache" / "ttc-router"))


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Append-only map text-hash -> float32 vector for one embedder."""

    def __init__(self, embedder_id: str, root: Path | None = None) -> None:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", embedder_id)
        self.directory = (root or default_cache_dir()) / slug
        self._vectors: dict[str, np.ndarray] = {}
        self._loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        if self.directory.exists():
            for shard in sorted(self.directory.glob("shard-*.npz")):
                with np.load(shard, allow_pickle=False) as data:
                    for key, vec in zip(data["keys"].tolist(), data["vectors"], strict=True):
                        self._vectors[key] = vec
        self._loaded = True

    def get_many(self, texts: Sequence[str]) -> list[np.ndarray | None]:
        self._load()
        return [self._vectors.get(text_hash(t)) for t in texts]

    def put_many(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        if len(texts) == 0:
            return
        self._load()
        keys = [text_hash(t) for t in texts]
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".tmp-{uuid.uuid4().hex}.npz"
        np.savez(tmp, keys=np.array(keys), vectors=vectors.astype(np.float32))
        tmp.rename(self.directory / f"shard-{uuid.uuid4().hex}.npz")
        for key, vec in zip(keys, vectors, strict=True):
            self._vectors[key] = vec.astype(np.float32)
