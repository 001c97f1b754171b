"""Static token embeddings distilled from a sentence-transformers model.

MiniLM through torch costs ~15 ms per prompt on 2 cores; the gateway's budget
is 5 ms at p50. Following the Model2Vec recipe, we run the teacher once on
every vocabulary token in isolation and keep its pooled output as a fixed
vector per token. A prompt's embedding is then a weighted mean of its token
vectors: one Rust tokenizer call plus a gather, well under a millisecond.

Token weights down-weight frequent tokens (SIF-style, from the token id rank
in the WordPiece vocabulary, which is roughly frequency ordered), which is
what keeps plain averaging from being dominated by "the", "of", etc.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from router.features.cache import default_cache_dir
from router.features.sentence import DEFAULT_MODEL, resolve_model_path, set_torch_threads

MAX_TOKENS = 512


def distill_table(model_name: str = DEFAULT_MODEL, batch_size: int = 512) -> tuple[np.ndarray, str]:
    """(vocab_size, dim) float32 token table and the tokenizer JSON text.

    Cached under the router cache dir, since it takes a few minutes once.
    """
    cache = default_cache_dir() / f"static-{model_name.replace('/', '_')}.npz"
    model_path = Path(resolve_model_path(model_name))
    tok_json = (model_path / "tokenizer.json").read_text(encoding="utf-8")
    if cache.exists():
        with np.load(cache, allow_pickle=False) as data:
            return data["table"], tok_json
    set_torch_threads()
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_path), device="cpu")
    tokenizer = model.tokenizer
    vocab_size = int(tokenizer.vocab_size)
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    rows: list[np.ndarray] = []
    with torch.inference_mode():
        for start in range(0, vocab_size, batch_size):
            ids = torch.arange(start, min(start + batch_size, vocab_size))
            input_ids = torch.stack([torch.full_like(ids, cls_id), ids, torch.full_like(ids, sep_id)], dim=1)
            features = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
                        "token_type_ids": torch.zeros_like(input_ids)}
            out = model(features)["sentence_embedding"]
            rows.append(out.numpy().astype(np.float32))
    table = np.concatenate(rows)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, table=table)
    return table, tok_json


class StaticEmbedder:
    """Featurizer: SIF-weighted mean of distilled static token vectors, L2-normalized."""

    kind = "static-distilled"

    def __init__(
        self,
        table: np.ndarray,
        tokenizer_json: str,
        teacher: str = DEFAULT_MODEL,
        sif_a: float = 1e-3,
        weights: np.ndarray | None = None,
    ) -> None:
        from tokenizers import Tokenizer

        self.teacher = teacher
        self.sif_a = sif_a
        self.table = table.astype(np.float32)
        self.tokenizer_json = tokenizer_json
        self._tok = Tokenizer.from_str(tokenizer_json)
        self._tok.no_padding()
        self._tok.enable_truncation(MAX_TOKENS)
        vocab = self.table.shape[0]
        if weights is None:
            # Before `fit`: Zipf prior on the token id (WordPiece ids are roughly
            # frequency ordered), SIF weight a / (a + p).
            rank = np.arange(1, vocab + 1, dtype=np.float64)
            p = (1.0 / rank) / np.sum(1.0 / rank)
            weights = (sif_a / (sif_a + p)).astype(np.float32)
        self.weights = np.asarray(weights, dtype=np.float32).copy()
        for tok in json.loads(tokenizer_json).get("added_tokens", []):
            if tok.get("special") and tok["id"] < vocab:
                self.weights[tok["id"]] = 0.0

    def fit(self, prompts: Sequence[str]) -> StaticEmbedder:
        """SIF weights a / (a + p(token)) from token frequencies in the training prompts."""
        counts = np.ones(self.table.shape[0], dtype=np.float64)  # add-one smoothing
        for enc in self._tok.encode_batch(list(prompts)):
            np.add.at(counts, np.asarray(enc.ids, dtype=np.int64), 1.0)
        p = counts / counts.sum()
        specials = self.weights == 0.0
        self.weights = (self.sif_a / (self.sif_a + p)).astype(np.float32)
        self.weights[specials] = 0.0
        return self

    @classmethod
    def distilled(cls, teacher: str = DEFAULT_MODEL) -> StaticEmbedder:
        table, tok_json = distill_table(teacher)
        return cls(table, tok_json, teacher)

    @property
    def dim(self) -> int:
        return int(self.table.shape[1])

    def _one(self, ids: Sequence[int]) -> np.ndarray:
        idx = np.asarray(ids, dtype=np.int64)
        if idx.size == 0:
            return np.zeros(self.dim, dtype=np.float32)
        w = self.weights[idx]
        vec = w @ self.table[idx]
        norm = float(np.linalg.norm(vec))
        return vec / norm if norm > 0 else vec

    def encode(self, prompts: Sequence[str]) -> list[list[int]]:
        """WordPiece token ids (truncated to MAX_TOKENS), shared with the token bag."""
        if len(prompts) == 1:
            return [self._tok.encode(prompts[0]).ids]
        return [e.ids for e in self._tok.encode_batch(list(prompts))]

    def embed_ids(self, token_ids: Sequence[Sequence[int]]) -> np.ndarray:
        return np.stack([self._one(ids) for ids in token_ids]).astype(np.float32)

    @property
    def special_ids(self) -> list[int]:
        """Token ids that carry no content (weight 0): [CLS], [SEP], [PAD], ..."""
        return [int(i) for i in np.flatnonzero(self.weights == 0.0)]

    def transform(self, prompts: Sequence[str], progress: bool = False) -> np.ndarray:
        return self.embed_ids(self.encode(prompts))

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "teacher": self.teacher, "sif_a": self.sif_a, "dim": self.dim}

    def save(self, directory: Path) -> dict[str, Any]:
        np.savez_compressed(directory / "static_table.npz", table=self.table.astype(np.float16), weights=self.weights)
        (directory / "tokenizer.json").write_text(self.tokenizer_json, encoding="utf-8")
        return {**self.spec(), "table": "static_table.npz", "tokenizer": "tokenizer.json"}

    @classmethod
    def load(cls, directory: Path, spec: dict[str, Any]) -> StaticEmbedder:
        with np.load(directory / spec["table"], allow_pickle=False) as data:
            table = data["table"].astype(np.float32)
            weights = data["weights"].astype(np.float32)
        tok_json = (directory / spec["tokenizer"]).read_text(encoding="utf-8")
        return cls(table, tok_json, spec.get("teacher", DEFAULT_MODEL), float(spec.get("sif_a", 1e-3)), weights)
