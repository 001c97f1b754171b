"""The ONNX Runtime MiniLM embedder: same vectors as torch, cached export, artifact round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from contracts.outcomes import OutcomeRow
from contracts.prices import Price
from router.api import load_router
from router.features import PromptFeaturizer, build_featurizer
from router.features import onnx as onnx_mod
from router.features.onnx import OnnxEmbedder, onnx_model_file
from router.features.sentence import SentenceEmbedder
from router.lab.train import TrainConfig, train_router

PROMPTS = [
    "What is 17 times 23?",
    "Summarize the causes of the French Revolution in three sentences.",
    "x",
    "",
    # Longer than MiniLM's 256-token window: both backends must truncate the same way.
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many in May. " * 20,
]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    return SentenceEmbedder(use_cache=False).encode_uncached(PROMPTS)


def test_fp32_graph_reproduces_sentence_transformers(torch_vectors: np.ndarray) -> None:
    embedder = OnnxEmbedder(quantization="none", use_cache=False)
    batch = embedder.transform(PROMPTS)
    assert batch.shape == (len(PROMPTS), 384)
    assert _cosines(batch, torch_vectors).min() > 0.9999
    one_by_one = np.vstack([embedder.transform([p]) for p in PROMPTS])
    np.testing.assert_allclose(one_by_one, batch, atol=1e-5)
    assert len(embedder.encode(PROMPTS[-1:])[0]) == 256


def test_int8_graph_is_close_and_independent_of_batch_mates(torch_vectors: np.ndarray) -> None:
    embedder = OnnxEmbedder(quantization="int8", use_cache=False)
    batch = embedder.transform(PROMPTS)
    cos = _cosines(batch, torch_vectors)
    assert cos.min() > 0.95 and cos.mean() > 0.98
    assert cos.min() < 0.99999  # it really is the quantized graph
    # Activations are quantized per batch, so training must embed one prompt at a time, like serving.
    np.testing.assert_array_equal(np.vstack([embedder.transform([p]) for p in PROMPTS]), batch)


def test_export_is_cached_and_keyed_by_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    first = onnx_model_file(quantization="int8")
    assert first.exists() and "int8" in first.name

    def no_export(*_: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_mod, "_export_fp32", no_export)
    monkeypatch.setattr(onnx_mod, "_quantize_int8", no_export)
    assert onnx_model_file(quantization="int8") == first
    assert onnx_model_file(quantization="none").name.endswith("-none.onnx")


def test_a_prebuilt_graph_directory_is_used_without_exporting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A container image ships the export; replicas with an empty (or read-only) cache use it as is."""
    exported = onnx_model_file(quantization="int8")
    shipped = tmp_path / "image"
    shipped.mkdir()
    (shipped / exported.name).write_bytes(exported.read_bytes())
    monkeypatch.setenv("TTC_ROUTER_ONNX_DIR", str(shipped))

    def no_export(*_: object) -> None:
        raise AssertionError("exported although the image ships the graph")

    monkeypatch.setattr(onnx_mod, "_export_fp32", no_export)
    monkeypatch.setattr(onnx_mod, "_quantize_int8", no_export)
    assert onnx_model_file(quantization="int8", cache_dir=tmp_path / "empty-cache") == shipped / exported.name
    assert not (tmp_path / "empty-cache").exists()
    with pytest.raises(AssertionError, match="exported"):  # a graph the image does not ship is still exported
        onnx_model_file(quantization="none", cache_dir=tmp_path / "empty-cache")


def test_rejects_models_that_do_not_mean_pool(tmp_path: Path) -> None:
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True,
                                                                   "pooling_mode_mean_tokens": False}))
    (tmp_path / "model.safetensors").write_bytes(b"not used")
    with pytest.raises(ValueError, match="mean pooling only"):
        onnx_model_file(str(tmp_path), cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="quantization"):
        OnnxEmbedder(quantization="int4")  # type: ignore[arg-type]


def _rows() -> list[OutcomeRow]:
    """`cheap` answers arithmetic, fails history; `dear` answers both."""
    rows = []
    for i in range(30):
        for task, prompt in (("math", f"What is {i} plus {i + 3}?"),
                             ("history", f"Who ruled France in the year {1500 + 7 * i}?")):
            rows.append(OutcomeRow(prompt=prompt, model="cheap", score=float(task == "math"), task=task,
                                   prompt_tokens=10, completion_tokens=5))
            rows.append(OutcomeRow(prompt=prompt, model="dear", score=1.0, task=task, prompt_tokens=10,
                                   completion_tokens=5))
    return rows


def test_int8_artifact_round_trip_serves_the_trained_features(tmp_path: Path) -> None:
    prices = {"cheap": Price(input_per_1m=0.5, output_per_1m=0.5), "dear": Price(input_per_1m=10, output_per_1m=30)}
    rows = _rows()
    result = train_router(rows, tmp_path / "art", prices, TrainConfig(featurizer="minilm-int8", cv_folds=3,
                                                                      max_tokens=64))
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    assert manifest["featurizer"]["embedder"]["kind"] == "onnx"
    assert manifest["featurizer"]["embedder"]["quantization"] == "int8"
    assert manifest["featurizer"]["embedder"]["max_seq_length"] == 64
    assert result.cv["token_bag"]["mode"] == "auto"  # ONNX embedders expose token ids, so the bag is tried
    router = load_router(tmp_path / "art")  # serving mode: no embedding cache
    served = router.featurizer.embedder
    assert isinstance(served, OnnxEmbedder) and not served.cached and served.max_tokens == 64
    prompts = ["What is 40 plus 43?", "Who ruled France in the year 1790?"]
    trained = build_featurizer("minilm-int8", max_tokens=64)
    np.testing.assert_array_equal(router.featurizer.transform_base(prompts), trained.transform_base(prompts))
    quality = router.predict(prompts).quality
    cheap = router.models.index("cheap")
    assert quality[0, cheap] > 0.8 and quality[1, cheap] < 0.2


def test_token_bag_on_an_onnx_featurizer_reuses_its_ids() -> None:
    prompts = [f"Please describe the {w} of item {i}." for i in range(20) for w in ("colour", "flavor")]
    feat = PromptFeaturizer(OnnxEmbedder(use_cache=False), token_bag_dims=2).fit(prompts)
    assert feat.token_bag is not None
    x = feat.transform(prompts)
    assert x.shape == (len(prompts), 384 + 18 + 2)
    np.testing.assert_allclose(feat.transform(prompts[:1]), x[:1], atol=1e-6)


def test_max_tokens_truncates_and_is_validated(torch_vectors: np.ndarray) -> None:
    short = OnnxEmbedder(quantization="none", use_cache=False, max_tokens=32)
    assert len(short.encode(PROMPTS[-1:])[0]) == 32
    vectors = short.transform(PROMPTS)
    cos = _cosines(vectors, torch_vectors)
    assert cos[:-1].min() > 0.9999  # short prompts are untouched
    assert cos[-1] < 0.9999  # the long one lost its tail
    assert short.spec()["max_seq_length"] == 32
    with pytest.raises(ValueError, match="max_tokens"):
        OnnxEmbedder(max_tokens=4096)
    with pytest.raises(ValueError, match="ONNX featurizers"):
        build_featurizer("static", max_tokens=64)


def test_serving_warns_when_its_export_differs_from_the_trained_one(caplog: pytest.LogCaptureFixture) -> None:
    trained = OnnxEmbedder(use_cache=False)
    saved = trained.save(Path("."))
    assert saved["graph_sha256"] == trained.graph_sha256()
    same = OnnxEmbedder(use_cache=False, expected_graph_sha256=saved["graph_sha256"])
    with caplog.at_level("WARNING", logger="router.features.onnx"):
        same.transform(["hello"])
    assert not caplog.records
    other = OnnxEmbedder(use_cache=False, expected_graph_sha256="0" * 64)
    with caplog.at_level("WARNING", logger="router.features.onnx"):
        other.transform(["hello"])
    assert "differs from the one this router was trained with" in caplog.text


def test_embedding_cache_is_keyed_by_the_graph_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Vectors cached for one export are never served for another (new weights, other quantizer version)."""
    monkeypatch.setenv("TTC_ROUTER_CACHE", str(tmp_path))

    def embedder(graph_sha: str, vector: float) -> OnnxEmbedder:
        e = OnnxEmbedder(quantization="int8", use_cache=True)
        monkeypatch.setattr(e, "graph_sha256", lambda: graph_sha)
        monkeypatch.setattr(e, "encode_uncached", lambda texts, progress=False: np.full((len(texts), 384), vector, np.float32))
        return e

    assert embedder("a" * 64, 1.0).transform(["a prompt"])[0, 0] == 1.0
    assert embedder("a" * 64, 2.0).transform(["a prompt"])[0, 0] == 1.0  # same graph: from the cache
    assert embedder("b" * 64, 3.0).transform(["a prompt"])[0, 0] == 3.0  # another graph: embedded again
