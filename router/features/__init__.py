"""Prompt featurization: an embedding plus cheap text statistics.

The embedders:

* ``minilm`` (``sentence-transformers``): all-MiniLM-L6-v2 through torch,
  cached on disk. Best for training-time quality, ~15 ms per uncached prompt.
* ``static`` (``static-distilled``): token vectors distilled from MiniLM,
  averaged. Sub-millisecond, for the gateway's latency budget.
* ``static-proj``: ``static`` plus a linear map, fitted at train time, from the
  static features to MiniLM's sentence embedding (router.features.projection).
  Same serving cost plus one small matrix product.
* ``minilm-onnx`` / ``minilm-int8`` (``onnx``): MiniLM itself through ONNX Runtime,
  fp32 (the same vectors as ``minilm``, ~3 ms) or per-channel int8 (~2 ms).

With a static or ONNX embedder, `token_bag_dims` > 0 appends an LSA of the prompt's
WordPiece token bag (router.features.bow), which recognizes tasks better.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from router.features.aux import AuxRegressor
from router.features.bow import TokenBag, fit_token_bag
from router.features.onnx import OnnxEmbedder, max_seq_length
from router.features.projection import Projection, fit_projection
from router.features.sentence import DEFAULT_MODEL, SentenceEmbedder, resolve_model_path
from router.features.static import StaticEmbedder
from router.features.text import FEATURE_NAMES, TextFeatures

ONNX_FEATURIZERS = ("minilm-onnx", "minilm-int8")
FEATURIZERS = ("minilm", "static", "minilm-only", "static-only", "static-proj", *ONNX_FEATURIZERS)
# What `train` uses unless told otherwise: MiniLM's own vectors at serving latency.
DEFAULT_FEATURIZER = "minilm-int8"
# ONNX featurizers read a prompt's first 128 tokens unless told otherwise: that bounds the latency
# tail (long prompts) and, on LLMRouter, routed as well as MiniLM's full 256-token window.
ONNX_DEFAULT_MAX_TOKENS = 128
# Featurizers whose embedder tokenizes with WordPiece ids it exposes: they can carry a token bag.
TOKEN_ID_FEATURIZERS = ("static", "static-only", "static-proj", *ONNX_FEATURIZERS)
_TOKEN_ID_EMBEDDERS = (StaticEmbedder, OnnxEmbedder)


class Embedder(Protocol):
    kind: str

    @property
    def dim(self) -> int: ...

    def transform(self, prompts: Sequence[str], progress: bool = False) -> np.ndarray: ...

    def spec(self) -> dict[str, Any]: ...


class PromptFeaturizer:
    """Concatenates an embedding with optional text statistics and auxiliary predictions.

    Columns: [embedding | text statistics | aux regressor outputs | token bag]. With a
    projection (`project_to` a teacher model), the embedding columns are the
    projected embedding (router.features.projection). Auxiliary regressors
    (router.features.aux) read the unprojected embedding and text columns.
    The token bag (router.features.bow, static embedders only) is fitted in
    `fit` when `token_bag_dims` > 0.
    """

    def __init__(
        self,
        embedder: Embedder,
        text_features: bool = True,
        aux: Sequence[AuxRegressor] = (),
        project_to: str | None = None,
        projection: Projection | None = None,
        token_bag_dims: int = 0,
        token_bag: TokenBag | None = None,
    ) -> None:
        if (token_bag_dims or token_bag is not None) and not isinstance(embedder, _TOKEN_ID_EMBEDDERS):
            raise ValueError("the token bag reuses the embedder's WordPiece ids: use a static or ONNX featurizer")
        self.embedder = embedder
        self.text_features = text_features
        self._text = TextFeatures()
        self.aux: list[AuxRegressor] = list(aux)
        self.project_to = project_to or (projection.teacher if projection else None)
        self.projection = projection
        self.token_bag = token_bag
        self.token_bag_dims = token_bag.dim if token_bag is not None else token_bag_dims

    @property
    def embedding_dim(self) -> int:
        """Leading columns of `transform` that hold the L2-normalized embedding."""
        return int(self.projection.dim if self.projection is not None else self.embedder.dim)

    def fit(self, prompts: Sequence[str], progress: bool = False, corpus: Sequence[str] = ()) -> PromptFeaturizer:
        """Token weights (static) and, with `project_to`, the map to the teacher's embedding.

        The teacher embeds every training prompt, plus an optional unlabeled
        `corpus`, once (cached on disk): affordable offline, never done at
        serving time. Token weights come from the training prompts only.
        """
        if isinstance(self.embedder, StaticEmbedder):
            self.embedder.fit(prompts)
        if self.token_bag_dims and isinstance(self.embedder, _TOKEN_ID_EMBEDDERS):
            self.token_bag = fit_token_bag(self.embedder.encode(prompts), self.token_bag_dims,
                                           skip=self.embedder.special_ids)
        if self.project_to:
            texts = list(prompts) + list(corpus)
            teacher = SentenceEmbedder(self.project_to).transform(texts, progress)
            self.projection = fit_projection(self.transform_base(texts), teacher, self.project_to)
        return self

    def transform_base(
        self, prompts: Sequence[str], progress: bool = False, token_ids: list[list[int]] | None = None
    ) -> np.ndarray:
        """Embedding and text statistics: the input of the auxiliary regressors."""
        by_ids = self.embedder if isinstance(self.embedder, _TOKEN_ID_EMBEDDERS) else None
        # Reuse the ids unless the embedder's disk cache would skip the forward pass anyway.
        if token_ids is not None and by_ids is not None and not (isinstance(by_ids, OnnxEmbedder) and by_ids.cached):
            emb = by_ids.embed_ids(token_ids)
        else:
            emb = self.embedder.transform(prompts, progress)
        if not self.text_features:
            return emb
        return np.hstack([emb, self._text.transform(prompts)]).astype(np.float32)

    def transform(self, prompts: Sequence[str], progress: bool = False) -> np.ndarray:
        ids = None
        if self.token_bag is not None and isinstance(self.embedder, _TOKEN_ID_EMBEDDERS):
            ids = self.embedder.encode(prompts)  # tokenized once for the embedding and the bag
        base = self.transform_base(prompts, progress, token_ids=ids)
        out = base
        if self.projection is not None:
            out = np.hstack([self.projection.transform(base), base[:, self.embedder.dim :]])
        blocks = [out, *[reg.transform(base) for reg in self.aux]]
        if self.token_bag is not None and ids is not None:
            blocks.append(self.token_bag.transform(ids))
        return (np.hstack(blocks) if len(blocks) > 1 else out).astype(np.float32)

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
        spec: dict[str, Any] = {
            "embedder": emb_spec, "text_features": self.text_features,
            "text_feature_names": list(FEATURE_NAMES) if self.text_features else [], "aux": aux_specs,
        }
        if self.token_bag is not None:
            self.token_bag.save(directory / "token_bag.npz")
            spec["token_bag"] = {"file": "token_bag.npz", "dims": self.token_bag.dim}
        if self.projection is not None:
            self.projection.save(directory / "projection.npz")
            spec["projection"] = {"file": "projection.npz", "teacher": self.projection.teacher,
                                  "alpha": self.projection.alpha}
        return spec

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
        elif emb["kind"] == OnnxEmbedder.kind:
            embedder = OnnxEmbedder(emb["model"], emb.get("quantization", "int8"), use_cache=embedding_cache,
                                    max_tokens=emb.get("max_seq_length"),
                                    expected_graph_sha256=emb.get("graph_sha256"))
        else:
            raise ValueError(f"unknown embedder kind {emb['kind']!r}")
        aux = [AuxRegressor.load(directory / _plain_name(a["file"])) for a in spec.get("aux", [])]
        proj_spec = spec.get("projection")
        projection = (Projection.load(directory / _plain_name(proj_spec["file"]), str(proj_spec["teacher"]))
                      if proj_spec else None)
        bag_spec = spec.get("token_bag")
        token_bag = TokenBag.load(directory / _plain_name(bag_spec["file"])) if bag_spec else None
        return cls(embedder, bool(spec.get("text_features", True)), aux, projection=projection, token_bag=token_bag)


def _plain_name(name: str) -> str:
    """Artifact files are referenced by bare names: a manifest cannot point outside its directory."""
    if Path(name).name != name or name.startswith("."):
        raise ValueError(f"artifact file name {name!r} must be a plain file name")
    return name


def build_featurizer(name: str = DEFAULT_FEATURIZER, embedding_model: str = DEFAULT_MODEL, token_bag_dims: int = 0,
                     max_tokens: int | None = None) -> PromptFeaturizer:
    """`minilm`/`static` add text statistics; `*-only` use the embedding alone.

    `max_tokens` truncates prompts for the ONNX featurizers (default ONNX_DEFAULT_MAX_TOKENS,
    capped at the model's window)."""
    if name not in FEATURIZERS:
        raise ValueError(f"unknown featurizer {name!r}; choose one of {FEATURIZERS}")
    if max_tokens is not None and name not in ONNX_FEATURIZERS:
        raise ValueError(f"max_tokens applies to the ONNX featurizers {ONNX_FEATURIZERS} only")
    if name == "static-proj":
        return PromptFeaturizer(StaticEmbedder.distilled(embedding_model), text_features=True,
                                project_to=embedding_model, token_bag_dims=token_bag_dims)
    if name in ONNX_FEATURIZERS:
        window = max_seq_length(Path(resolve_model_path(embedding_model)))
        onnx_embedder = OnnxEmbedder(embedding_model, "none" if name == "minilm-onnx" else "int8",
                                     max_tokens=max_tokens or min(ONNX_DEFAULT_MAX_TOKENS, window))
        return PromptFeaturizer(onnx_embedder, text_features=True, token_bag_dims=token_bag_dims)
    base, _, only = name.partition("-")
    embedder: Embedder = (
        SentenceEmbedder(embedding_model) if base == "minilm" else StaticEmbedder.distilled(embedding_model)
    )
    return PromptFeaturizer(embedder, text_features=not only, token_bag_dims=token_bag_dims)
