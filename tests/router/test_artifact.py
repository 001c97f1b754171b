"""Train a tiny artifact, load it back, and check the public routing API."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from router import Candidate, NoKnownCandidateError, artifact_fingerprint, load_router
from contracts.outcomes import OutcomeRow
from router.features import PromptFeaturizer
from router.features.sentence import resolve_model_path
from router.features.static import StaticEmbedder
from router.lab.importers import read_prices
from router.lab.train import TrainConfig, train_router
from router.predictors.quality import PerModelLogistic, SharedFactorModel

STRONG, WEAK = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory, gsm8k_split: Path,
             gsm8k_rows: tuple[list[OutcomeRow], list[OutcomeRow]]) -> Path:
    out = tmp_path_factory.mktemp("artifact")
    train, _ = gsm8k_rows
    train_router(train, out, read_prices(gsm8k_split / "prices.json"), TrainConfig(cv_folds=2),
                 candidates=[PerModelLogistic(c=0.01), SharedFactorModel(rank=4, hidden=16, epochs=5)])
    return out


def test_manifest_records_provenance(artifact: Path) -> None:
    manifest = json.loads((artifact / "manifest.json").read_text())
    for key in ("models", "featurizer", "cv", "data_sha256", "libraries", "version", "prices"):
        assert manifest[key]
    assert manifest["featurizer"]["embedder"]["model"] == "all-MiniLM-L6-v2"
    # The default featurizer serves within the gateway's latency budget: MiniLM via ONNX Runtime, int8.
    assert manifest["featurizer"]["embedder"]["kind"] == "onnx"
    assert manifest["featurizer"]["embedder"]["max_seq_length"] == 128
    assert [c["kind"] for c in manifest["cv"]["candidates"]] == ["logistic", "shared", "ensemble"]
    assert "scikit-learn" in manifest["libraries"]
    # No pickles anywhere in the artifact.
    for path in artifact.iterdir():
        assert path.suffix in {".json", ".jsonl", ".npz"}  # .jsonl: the probe set (plain data)
        if path.suffix == ".npz":
            np.load(path, allow_pickle=False).files


def test_round_trip_gives_identical_predictions(artifact: Path, gsm8k_rows: tuple[list[OutcomeRow], list[OutcomeRow]]) -> None:
    _, test = gsm8k_rows
    prompts = sorted({r.prompt for r in test})[:20]
    first, second = load_router(artifact), load_router(artifact)
    a, b = first.predict(prompts), second.predict(prompts)
    np.testing.assert_array_equal(a.quality, b.quality)
    np.testing.assert_array_equal(a.completion_tokens, b.completion_tokens)
    assert a.quality.shape == (20, 2) and ((a.quality > 0) & (a.quality < 1)).all()
    assert first.version == second.version and first.models == [STRONG, WEAK]


def _candidates(tokens: int = 100) -> list[Candidate]:
    return [Candidate(name=STRONG, input_per_1m=10, output_per_1m=30, prompt_tokens=tokens),
            Candidate(name=WEAK, input_per_1m=0.6, output_per_1m=0.6, prompt_tokens=tokens)]


def test_route_respects_cost_weight_and_tolerance(artifact: Path) -> None:
    router = load_router(artifact)
    prompt = "A train travels 60 miles per hour for 3 hours. How far does it go?"
    free = router.route(prompt, _candidates(), cost_weight=0.0)
    q = {c.model: c.predicted_quality for c in free.candidates}
    assert free.model == max(q, key=q.__getitem__)
    assert router.route(prompt, _candidates(), cost_weight=1e6).model == WEAK
    assert router.route(prompt, _candidates(), tolerance=1.0).model == WEAK
    assert free.version == router.version and free.latency_ms > 0
    costs = {c.model: c.expected_cost_usd for c in free.candidates}
    assert costs[STRONG] > costs[WEAK] > 0
    assert router.difficulty(prompt, WEAK) == pytest.approx(q[WEAK])


def test_unknown_candidates_are_flagged_never_picked_unless_allowed_or_rejected(artifact: Path) -> None:
    router = load_router(artifact)
    extra = Candidate(name="not-trained", input_per_1m=0, output_per_1m=0, prompt_tokens=5)
    # Free, so a huge cost weight would pick it if it were eligible.
    decision = router.route("hello", [extra, *_candidates()], cost_weight=1e9)
    flags = {c.model: c.onboarded for c in decision.candidates}
    assert flags == {"not-trained": False, STRONG: True, WEAK: True} and decision.model != "not-trained"
    allowed = router.route("hello", [extra, *_candidates()], cost_weight=1e9, allow_unonboarded=True)
    assert allowed.model == "not-trained"
    with pytest.raises(NoKnownCandidateError, match="not-trained"):
        router.route("hello", [extra])
    with pytest.raises(NoKnownCandidateError):
        router.difficulty("hello", "not-trained")


def test_fingerprint_changes_when_artifact_changes(artifact: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(artifact, copy)
    before = artifact_fingerprint(copy)
    assert before == artifact_fingerprint(artifact)
    (copy / "quality.npz").write_bytes((copy / "quality.npz").read_bytes() + b"\0")
    assert artifact_fingerprint(copy) != before


def test_static_featurizer_round_trip(tmp_path: Path) -> None:
    tok = (Path(resolve_model_path("all-MiniLM-L6-v2")) / "tokenizer.json").read_text()
    table = np.random.default_rng(0).normal(size=(30522, 8)).astype(np.float32)
    feat = PromptFeaturizer(StaticEmbedder(table, tok)).fit(["what is two plus two", "name a prime"])
    spec = feat.save(tmp_path)
    again = PromptFeaturizer.load(tmp_path, spec)
    prompts = ["what is two plus two", "a different prompt"]
    # The table is stored as float16, so allow its rounding.
    np.testing.assert_allclose(feat.transform(prompts), again.transform(prompts), atol=2e-3)
    assert feat.transform(prompts).shape == (2, 8 + 18)
