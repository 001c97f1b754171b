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
from collections.abc import Callable, Sequence
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

    def lookup_or_embed(self, texts: Sequence[str], embed: Callable[[Sequence[str]], np.ndarray],
                        chunk: int = 2048) -> np.ndarray:
        """Vectors for `texts`, embedding (and storing) only the ones not cached yet.

        Missing texts go shortest first, which keeps padding waste low within each batch,
        and are stored chunk by chunk, so an interrupted job keeps what it finished."""
        found = self.get_many(texts)
        missing = sorted({t for t, v in zip(texts, found, strict=True) if v is None}, key=len)
        if missing:
            for start in range(0, len(missing), chunk):
                part = missing[start : start + chunk]
                self.put_many(part, embed(part))
            found = self.get_many(texts)
        return np.stack([v for v in found if v is not None]).astype(np.float32)
