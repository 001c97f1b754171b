"""The router as the gateway sees it: `load_router(dir).route(prompt, candidates)`.

New routers subclass `BaseRouter` and implement one method, `predict`, which
returns predicted quality and output length for each of the router's models;
the policy, candidate handling, pricing and timing are shared.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from contracts.prices import Price
from router.artifact import Manifest, read_manifest
from router.cold_start import Tier, prior_quality
from router.features import PromptFeaturizer
from router.policy import choose_by_tolerance, choose_by_utility
from router.predictors.head import QualityHead
from router.predictors.length import LengthModel


class Candidate(Price):
    """A model the caller may route to: its price (USD per 1M tokens, flat fields so callers pass
    `input_per_1m=`/`output_per_1m=` as before), its name and the prompt's token count."""

    name: str = Field(min_length=1)
    prompt_tokens: int = Field(ge=0)
    # Declared quality tier, used only while the router does not know the model (router.cold_start).
    tier: Tier | None = None


class CandidateScore(BaseModel):
    model: str
    predicted_quality: float
    expected_cost_usd: float
    predicted_completion_tokens: float
    onboarded: bool = True  # False: the artifact does not know the model; quality is a cold-start prior


class RoutingDecision(BaseModel):
    model: str
    candidates: list[CandidateScore]
    version: str
    latency_ms: float


class NoKnownCandidateError(ValueError):
    """None of the offered candidates is a model the router was trained on."""


@dataclass
class Predictions:
    quality: np.ndarray  # (n_prompts, n_models) P(success)
    completion_tokens: np.ndarray  # (n_prompts, n_models)


class BaseRouter(ABC):
    """Shared routing logic; subclasses only predict (RouteLLM style: one abstract method)."""

    version: str
    models: list[str]
    cost_scale_usd: float = 1.0
    default_cost_weight: float = 0.0

    @abstractmethod
    def predict(self, prompts: Sequence[str]) -> Predictions:
        """Quality and output length for every model in `self.models`."""

    def route(
        self,
        prompt: str,
        candidates: Sequence[Candidate],
        *,
        cost_weight: float | None = None,
        tolerance: float | None = None,
        allow_unonboarded: bool = False,
    ) -> RoutingDecision:
        """Pick a candidate. `tolerance` (if given) wins over `cost_weight`.

        Candidates the router does not know get a cold-start prior (router.cold_start) and are
        scored with `onboarded=False`; they may be picked only with `allow_unonboarded`. If no
        known candidate is offered, `NoKnownCandidateError` names them and the known models.
        """
        start = time.perf_counter()
        index = {m: j for j, m in enumerate(self.models)}
        known = [c for c in candidates if c.name in index]
        cold = [c for c in candidates if c.name not in index]
        if not known:
            raise NoKnownCandidateError(
                f"router {self.version} knows none of {[c.name for c in candidates]}; it knows {self.models}"
            )
        pred = self.predict([prompt])
        cols = [index[c.name] for c in known]
        quality = pred.quality[0, cols]
        tokens = pred.completion_tokens[0, cols]
        cost = np.array([c.cost_usd(c.prompt_tokens, float(t)) for c, t in zip(known, tokens, strict=True)])
        if cold:
            cold_tokens = float(np.median(tokens))
            cold_cost = np.array([c.cost_usd(c.prompt_tokens, cold_tokens) for c in cold])
            cold_quality = np.array([prior_quality(quality, cost, float(k), c.tier) for c, k in zip(cold, cold_cost, strict=True)])
            known, quality = [*known, *cold], np.concatenate([quality, cold_quality])
            tokens, cost = np.concatenate([tokens, np.full(len(cold), cold_tokens)]), np.concatenate([cost, cold_cost])
        # Unonboarded candidates are scored (the caller shows them) but picked only when allowed.
        eligible = np.flatnonzero([allow_unonboarded or c.name in index for c in known])
        if tolerance is not None:
            pick = int(eligible[choose_by_tolerance(quality[eligible], cost[eligible], tolerance)[0]])
        else:
            weight = self.default_cost_weight if cost_weight is None else cost_weight
            pick = int(eligible[choose_by_utility(quality[eligible], cost[eligible], weight, self.cost_scale_usd)[0]])
        scores = [
            CandidateScore(model=c.name, predicted_quality=float(q), expected_cost_usd=float(k),
                           predicted_completion_tokens=float(t), onboarded=c.name in index)
            for c, q, k, t in zip(known, quality, cost, tokens, strict=True)
        ]
        latency = (time.perf_counter() - start) * 1000.0
        return RoutingDecision(model=known[pick].name, candidates=scores, version=self.version, latency_ms=latency)

    def difficulty(self, prompt: str, model: str) -> float:
        """Predicted probability that `model` answers `prompt` well."""
        if model not in self.models:
            raise NoKnownCandidateError(f"router {self.version} has no predictor for {model!r}")
        return float(self.predict([prompt]).quality[0, self.models.index(model)])


class LearnedRouter(BaseRouter):
    """Featurizer + calibrated quality head + length model, loaded from an artifact."""

    def __init__(self, manifest: Manifest, featurizer: PromptFeaturizer, quality: QualityHead, length: LengthModel) -> None:
        self.manifest = manifest
        self.version = manifest.version
        self.models = list(manifest.models)
        self.cost_scale_usd = manifest.cost_scale_usd
        self.default_cost_weight = manifest.default_cost_weight
        self.featurizer = featurizer
        self.quality = quality
        self.length = length

    def predict(self, prompts: Sequence[str]) -> Predictions:
        x = self.featurizer.transform(prompts)
        return Predictions(self.quality.predict_proba(x), self.length.predict(x))

    def predict_features(self, x: np.ndarray) -> Predictions:
        """Same as `predict` on precomputed features (evaluation, benches)."""
        return Predictions(self.quality.predict_proba(x), self.length.predict(x))


def load_router(artifact_dir: str | Path, *, embedding_cache: bool = False) -> LearnedRouter:
    """Load an artifact. `embedding_cache=True` (offline evaluation) reuses on-disk embeddings."""
    directory = Path(artifact_dir)
    manifest = read_manifest(directory)
    featurizer = PromptFeaturizer.load(directory, manifest.featurizer, embedding_cache=embedding_cache)
    quality = QualityHead.load(directory / manifest.quality["file"])
    length = LengthModel.load(directory / manifest.length["file"])
    return LearnedRouter(manifest, featurizer, quality, length)


Router = BaseRouter  # the type the gateway holds; `load_router` returns a LearnedRouter
