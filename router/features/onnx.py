"""Sentence embeddings through ONNX Runtime: MiniLM's own vectors at a fraction of torch's cost.

Embedding one cold LLMRouter prompt at a time on 2 cores: torch p50 ~9 ms, ONNX Runtime
fp32 ~3.3 ms with the same vectors, per-channel dynamic int8 ~1.5-2 ms within cosine ~0.99
of them (whole routing decisions: bench/RESULTS.md). The ONNX graph is exported once from
the installed sentence-transformers model (torch is needed only then) and cached under the
router cache directory, keyed by a hash of the source weights. A container image can ship
the export instead: graphs in the directory named by ``TTC_ROUTER_ONNX_DIR`` are used as they
are, so replicas neither export at start nor need a writable cache, and all serve the same bytes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from router.features.cache import EmbeddingCache, default_cache_dir
from router.features.sentence import (
    DEFAULT_MODEL,
    resolve_model_path,
    set_torch_threads,
)

Quantization = Literal["none", "int8"]
_log = logging.getLogger(__name__)
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
PREBUILT_DIR_ENV = "TTC_ROUTER_ONNX_DIR"


@functools.lru_cache(maxsize=8)  # the installed weights do not change while a process runs; reloads skip the hash
def _weights_digest(model_dir: Path) -> str:
    for name in ("model.safetensors", "pytorch_model.bin"):
        path = model_dir / name
        if path.exists():
            digest = hashlib.sha256()
            with path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            return digest.hexdigest()[:16]
    raise FileNotFoundError(f"no model weights (model.safetensors) in {model_dir}")


def _check_mean_pooling(model_dir: Path) -> None:
    config = model_dir / "1_Pooling" / "config.json"
    if config.exists() and not json.loads(config.read_text(encoding="utf-8")).get("pooling_mode_mean_tokens", False):
        raise ValueError(f"the ONNX embedder implements mean pooling only; {model_dir} pools otherwise")


def max_seq_length(model_dir: Path) -> int:
    config = model_dir / "sentence_bert_config.json"
    if config.exists():
        return int(json.loads(config.read_text(encoding="utf-8")).get("max_seq_length", 256))
    return 256


def _export_fp32(model_dir: Path, out: Path) -> None:
    set_torch_threads()
    import torch
    from sentence_transformers import SentenceTransformer

    transformer: Any = SentenceTransformer(str(model_dir), device="cpu")[0].auto_model
    transformer.eval()

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = transformer

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    sample = torch.ones((2, 8), dtype=torch.int64)
    axes = {name: {0: "batch", 1: "tokens"} for name in (*_INPUTS, "last_hidden_state")}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter about the legacy exporter
        torch.onnx.export(LastHiddenState(), (sample, sample, torch.zeros_like(sample)), str(out),
                          input_names=list(_INPUTS), output_names=["last_hidden_state"], dynamic_axes=axes,
                          opset_version=17, dynamo=False)


def _quantize_int8(fp32: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic  # type: ignore[import-untyped]

    root = logging.getLogger()
    level = root.level
    # The quantizer logs a line per tensor (and advice to pre-process, which would change the graph
    # the benches measured) through the root logger: hundreds of lines at a server's first start.
    root.setLevel(max(level, logging.ERROR))
    try:
        # Per-channel weights keep cosine ~0.99 to the fp32 vectors; per-tensor fell to ~0.96.
        quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.setLevel(level)


def onnx_model_file(model_name: str = DEFAULT_MODEL, quantization: Quantization = "int8",
                    cache_dir: Path | None = None) -> Path:
    """The cached ONNX graph for this model and quantization, exported on first use."""
    model_dir = Path(resolve_model_path(model_name))
    _check_mean_pooling(model_dir)
    slug = f"{Path(model_name).name}-{_weights_digest(model_dir)}"
    prebuilt = os.environ.get(PREBUILT_DIR_ENV)
    if prebuilt and (Path(prebuilt) / f"{slug}-{quantization}.onnx").exists():
        return Path(prebuilt) / f"{slug}-{quantization}.onnx"
    folder = (cache_dir or default_cache_dir()) / "onnx"
    target = folder / f"{slug}-{quantization}.onnx"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    fp32 = folder / f"{slug}-none.onnx"
    # Build under a unique name, then rename: concurrent replicas never read half a file.
    if not fp32.exists():
        tmp = folder / f".tmp-{uuid.uuid4().hex}.onnx"
        _export_fp32(model_dir, tmp)
        os.replace(tmp, fp32)
    if quantization == "int8" and not target.exists():
        tmp = folder / f".tmp-{uuid.uuid4().hex}.onnx"
        _quantize_int8(fp32, tmp)
        os.replace(tmp, target)
    return target


class OnnxEmbedder:
    """Featurizer: mean-pooled, L2-normalized sentence embeddings from an ONNX Runtime session.

    Shares the token-id interface of the static embedder (`encode`, `embed_ids`,
    `special_ids`), so the token bag reuses the same tokenization.
    """

    kind = "onnx"

    def __init__(self, model_name: str = DEFAULT_MODEL, quantization: Quantization = "int8",
                 batch_size: int | None = None, use_cache: bool = True, max_tokens: int | None = None,
                 expected_graph_sha256: str | None = None) -> None:
        if quantization not in ("none", "int8"):
            raise ValueError(f"quantization must be 'none' or 'int8', not {quantization!r}")
        from tokenizers import Tokenizer

        self.model_name = model_name
        self.quantization: Quantization = quantization
        # int8 quantizes activations with one scale per batch, so a prompt's vector would depend
        # on its batch-mates: embed one at a time, exactly as serving does.
        self.batch_size = batch_size or (1 if quantization == "int8" else 64)
        model_dir = Path(resolve_model_path(model_name))
        window = max_seq_length(model_dir)
        if max_tokens is not None and not 8 <= max_tokens <= window:
            raise ValueError(f"max_tokens must be between 8 and the model's window of {window}, not {max_tokens}")
        # Fewer tokens bound the cost of long prompts (the latency tail); the model's window by default.
        self.max_tokens = max_tokens or window
        tokenizer_json = (model_dir / "tokenizer.json").read_text(encoding="utf-8")
        self._tok = Tokenizer.from_str(tokenizer_json)
        self._tok.no_padding()
        self._tok.enable_truncation(self.max_tokens)
        self._special = sorted(int(t["id"]) for t in json.loads(tokenizer_json).get("added_tokens", [])
                               if t.get("special"))
        self._pad_id = int(self._tok.token_to_id("[PAD]") or 0)
        self._session: Any = None
        self._graph: Path | None = None
        self._graph_sha256: str | None = None
        self.expected_graph_sha256 = expected_graph_sha256
        self._cache_suffix = "" if self.max_tokens == window else f"-t{self.max_tokens}"
        self._use_cache = use_cache
        self._cache: EmbeddingCache | None = None

    @property
    def session(self) -> Any:
        if self._session is None:
            import onnxruntime as ort  # type: ignore[import-untyped]

            options = ort.SessionOptions()
            options.intra_op_num_threads = int(os.environ.get("TTC_ROUTER_THREADS", "2"))
            options.inter_op_num_threads = 1
            # Spinning pool threads would hold the cores the numpy heads and the event loop need next.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._session = ort.InferenceSession(str(self.graph_file), options, providers=["CPUExecutionProvider"])
            self._check_graph()
        return self._session

    @property
    def graph_file(self) -> Path:
        if self._graph is None:
            self._graph = onnx_model_file(self.model_name, self.quantization)
        return self._graph

    def graph_sha256(self) -> str:
        if self._graph_sha256 is None:  # read by the graph check and the cache key: hash the 23 MB once
            self._graph_sha256 = hashlib.sha256(self.graph_file.read_bytes()).hexdigest()
        return self._graph_sha256

    def _check_graph(self) -> None:
        """Warn when this machine's export differs from the one the artifact was trained with.

        Exports are byte-identical for the same weights and library versions; other versions may
        shift the vectors slightly, which the router was not validated on."""
        if self.expected_graph_sha256 and self.graph_sha256() != self.expected_graph_sha256:
            _log.warning("ONNX graph %s differs from the one this router was trained with (sha256 %s...): "
                         "check the onnxruntime/torch versions in the artifact's manifest",
                         self.graph_file.name, self.expected_graph_sha256[:12])

    @property
    def cached(self) -> bool:
        return self._use_cache

    def _embedding_cache(self) -> EmbeddingCache:
        # Keyed by the graph's own bytes: new weights or another exporter/quantizer version
        # must never be served vectors computed by the old graph.
        if self._cache is None:
            self._cache = EmbeddingCache(f"onnx-{self.model_name}-{self.graph_sha256()[:16]}{self._cache_suffix}")
        return self._cache

    @property
    def dim(self) -> int:
        return int(self.session.get_outputs()[0].shape[-1])

    @property
    def special_ids(self) -> list[int]:
        return list(self._special)

    def encode(self, prompts: Sequence[str]) -> list[list[int]]:
        if len(prompts) == 1:
            return [self._tok.encode(prompts[0]).ids]
        return [e.ids for e in self._tok.encode_batch(list(prompts))]

    def _run(self, token_ids: Sequence[Sequence[int]]) -> np.ndarray:
        width = max(1, max(len(ids) for ids in token_ids))
        input_ids = np.full((len(token_ids), width), self._pad_id, dtype=np.int64)
        mask = np.zeros_like(input_ids)
        for row, ids in enumerate(token_ids):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        hidden = self.session.run(None, {"input_ids": input_ids, "attention_mask": mask,
                                         "token_type_ids": np.zeros_like(input_ids)})[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)

    def embed_ids(self, token_ids: Sequence[Sequence[int]]) -> np.ndarray:
        if not token_ids:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Batches of similar length waste little on padding.
        order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]))
        out = np.zeros((len(token_ids), self.dim), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            out[chunk] = self._run([token_ids[i] for i in chunk])
        return out

    def encode_uncached(self, prompts: Sequence[str], progress: bool = False) -> np.ndarray:
        ids = self.encode(prompts)
        step = 256
        if not progress or len(ids) <= step:
            return self.embed_ids(ids)
        from tqdm import tqdm

        return np.vstack([self.embed_ids(ids[i : i + step])
                          for i in tqdm(range(0, len(ids), step), desc="onnx embed", unit="chunk")])

    def transform(self, prompts: Sequence[str], progress: bool = False) -> np.ndarray:
        if not self._use_cache:
            return self.encode_uncached(prompts, progress)
        return self._embedding_cache().lookup_or_embed(prompts, lambda texts: self.encode_uncached(texts, progress))

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model_name, "quantization": self.quantization,
                "max_seq_length": self.max_tokens, "pooling": "mean", "normalize": True}

    def save(self, directory: Path) -> dict[str, Any]:
        # Referenced by name like the torch embedder: the graph is rebuilt from the same weights,
        # and its hash lets a serving replica notice an export that differs.
        return {**self.spec(), "graph_sha256": self.graph_sha256()}
