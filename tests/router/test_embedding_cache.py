"""The on-disk embedding cache: only missing texts are embedded, and what was stored survives a new process."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from router.features.cache import EmbeddingCache


def _fake_embed(calls: list[list[str]]) -> Callable[[Sequence[str]], np.ndarray]:
    def embed(texts: Sequence[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    return embed


def test_lookup_or_embed_embeds_each_missing_text_once_in_chunks(tmp_path: Path) -> None:
    calls: list[list[str]] = []
    cache = EmbeddingCache("demo", root=tmp_path)
    out = cache.lookup_or_embed(["bb", "a", "bb"], _fake_embed(calls))
    assert out.tolist() == [[2, 1], [1, 1], [2, 1]]
    assert calls == [["a", "bb"]]  # deduplicated, shortest first
    out = cache.lookup_or_embed(["ccc", "a", "dddd"], _fake_embed(calls), chunk=1)
    assert out[:, 0].tolist() == [3, 1, 4]
    assert calls[1:] == [["ccc"], ["dddd"]]  # only the new texts, one chunk each
    # A fresh cache object (a new process) reads the shards back: nothing is embedded again.
    again = EmbeddingCache("demo", root=tmp_path)
    assert again.lookup_or_embed(["dddd", "bb"], _fake_embed(calls))[:, 0].tolist() == [4, 2]
    assert len(calls) == 3
    assert len(list((tmp_path / "demo").glob("shard-*.npz"))) == 3
