"""Learned router: predicts each model's quality and cost for a prompt and picks one.

Public API used by the gateway::

    router = load_router(artifact_dir)
    decision = router.route(prompt, candidates, cost_weight=None, tolerance=None)
    router.difficulty(prompt, model)  # predicted P(success)
    router.version, router.models

This package is the serving side. The offline jobs (importers, collection,
training, evaluation, calibration, the CLI) live in `router.lab` and are
imported from there explicitly; serving modules never import them.
"""

from router.api import (
    BaseRouter,
    Candidate,
    CandidateScore,
    LearnedRouter,
    NoKnownCandidateError,
    Predictions,
    Router,
    RoutingDecision,
    load_router,
)
from router.artifact import artifact_fingerprint

__all__ = [
    "BaseRouter",
    "Candidate",
    "CandidateScore",
    "LearnedRouter",
    "NoKnownCandidateError",
    "Predictions",
    "Router",
    "RoutingDecision",
    "artifact_fingerprint",
    "load_router",
]
