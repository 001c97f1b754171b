"""Offline training: outcome rows -> router artifact."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from contracts.outcomes import OutcomeRow
from contracts.prices import Price
from router.artifact import Manifest, library_versions, write_manifest
from router.features import (
    DEFAULT_FEATURIZER,
    TOKEN_ID_FEATURIZERS,
    PromptFeaturizer,
    build_featurizer,
)
from router.features.aux import AUX_SOURCES, CORPORA, aux_key, drop_excluded, fit_aux
from router.features.task_prior import CLASSIFIER_GRID
from router.lab.matrix import OutcomeMatrix, build_matrix, infer_prices
from router.lab.outcomes import outcomes_sha256, prompt_key
from router.lab.probes import DEFAULT_PROBES, build_probe_set
from router.lab.selection import SelectionResult, select_and_fit
from router.policy import choose_by_utility, cost_weight_grid
from router.predictors.length import fit_length_model
from router.predictors.quality import QualityEstimator


class TrainConfig(BaseModel):
    featurizer: str = DEFAULT_FEATURIZER
    embedding_model: str = "all-MiniLM-L6-v2"
    # ONNX featurizers: truncate prompts to this many tokens (None: ONNX_DEFAULT_MAX_TOKENS).
    max_tokens: int | None = Field(default=None, ge=8)
    cv_folds: int = Field(default=5, ge=2)
    seed: int = 0
    # Where the default cost weight puts the average predicted cost, as a
    # fraction of the way from the cheapest to the dearest model.
    default_cost_position: float = Field(default=0.5, ge=0.0, le=1.0)
    # Stack a task prior (router.features.task_prior) when rows carry task labels;
    # kept only if it lowers the out-of-fold Brier score.
    task_prior: bool = True
    # The task classifier's C; None: the grid value with the lowest out-of-fold task log-loss.
    task_prior_c: float | None = Field(default=None, gt=0)
    # How candidates are chosen: out-of-fold routing AIQ on the training prompts
    # (needs complete rows with costs; falls back to Brier otherwise) or Brier.
    select_by: Literal["aiq", "brier"] = "aiq"
    # Auxiliary difficulty regressors (router.features.aux.AUX_SOURCES) and the
    # directory holding their public data (e.g. ../shared/data).
    aux: list[str] = Field(default_factory=list)
    aux_data_dir: str | None = None
    # Unlabeled corpora (router.features.aux.CORPORA) added to the training
    # prompts when fitting the `static-proj` map; also read from aux_data_dir.
    projection_corpus: list[str] = Field(default_factory=list)
    # LSA of the WordPiece token bag appended to static features (router.features.bow).
    # `auto`: fit the quality model with and without it and keep it only if the
    # stacked out-of-fold routing AIQ on the training prompts (else Brier) is better.
    token_bag: Literal["auto", "on", "off"] = "auto"
    token_bag_dims: int = Field(default=64, ge=1)
    # Probe set for onboarding new models (router.lab.probes): how many prompts, and where their
    # reference answers come from (collect's labeled-prompt JSONL; rows may name a `grader`).
    probes: int = Field(default=DEFAULT_PROBES, ge=0)
    probe_references: str | None = None
    probe_grader: str = "numeric"


class TrainResult(BaseModel):
    artifact: str
    version: str
    cv: dict[str, object]
    data_sha256: str


def expected_cost(prompt_tokens: np.ndarray, completion_tokens: np.ndarray, models: Sequence[str], prices: dict[str, Price]) -> np.ndarray:
    """(n, m) expected USD: each model's price on the prompt tokens and its predicted output tokens."""
    columns = [prices[m].cost_usd(prompt_tokens, completion_tokens[:, j]) for j, m in enumerate(models)]
    return np.column_stack(columns) if columns else np.zeros((len(prompt_tokens), 0))


def calibrate_weight_for_cost(quality: np.ndarray, cost: np.ndarray, cost_scale: float, target_cost: float) -> float:
    """Smallest cost weight whose mean routed cost is at most `target_cost` (predicted costs)."""
    grid = cost_weight_grid(quality, cost, cost_scale)
    rows = np.arange(len(quality))
    for w in grid:
        if cost[rows, choose_by_utility(quality, cost, w, cost_scale)].mean() <= target_cost + 1e-15:
            return float(w)
    return float(grid[-1])


def train_router(
    rows: Sequence[OutcomeRow],
    out_dir: Path,
    prices: dict[str, Price] | None = None,
    config: TrainConfig | None = None,
    featurizer: PromptFeaturizer | None = None,
    candidates: list[QualityEstimator] | None = None,
    progress: bool = False,
    exclude_prompts: Sequence[str] = (),
) -> TrainResult:
    """`exclude_prompts` (e.g. a held-out test set) are removed from auxiliary data."""
    cfg = config or TrainConfig()
    matrix = build_matrix(rows, prices=prices)
    if len(matrix.prompts) < 10:
        raise ValueError("need outcomes for at least 10 distinct prompts to train a router")
    price_map = dict(prices or {})
    missing = [m for m in matrix.models if m not in price_map]
    if missing:
        price_map.update({m: p for m, p in infer_prices(matrix).items() if m in missing})
        still = [m for m in matrix.models if m not in price_map]
        if still:
            raise ValueError(f"no price for {still}: pass --prices or give rows cost_usd and token counts")
    bag_dims = cfg.token_bag_dims if cfg.token_bag != "off" and cfg.featurizer in TOKEN_ID_FEATURIZERS else 0
    if cfg.token_bag == "on" and not bag_dims:
        raise ValueError(f"token_bag='on' needs one of the featurizers {TOKEN_ID_FEATURIZERS}")
    feat = featurizer or build_featurizer(cfg.featurizer, cfg.embedding_model, token_bag_dims=bag_dims,
                                          max_tokens=cfg.max_tokens)
    corpus, corpus_keys, corpus_report = _projection_corpus(cfg, exclude_prompts)
    feat.fit(matrix.prompts, progress=progress, corpus=corpus)
    aux_keys, aux_report = _fit_aux(feat, cfg, exclude_prompts)
    aux_keys = sorted(set(aux_keys) | corpus_keys)
    aux_report += corpus_report
    x = feat.transform(matrix.prompts, progress=progress)

    def select(features: np.ndarray) -> SelectionResult:
        return select_and_fit(features, matrix.score, matrix.mask, candidates, folds=cfg.cv_folds, seed=cfg.seed,
                              progress=progress, embedding_dim=feat.embedding_dim,
                              tasks=matrix.tasks if cfg.task_prior else None,
                              cost=matrix.cost if cfg.select_by == "aiq" else None,
                              task_c_grid=(cfg.task_prior_c,) if cfg.task_prior_c else CLASSIFIER_GRID)

    selection = select(x)
    bag_report: dict[str, object] = {"mode": cfg.token_bag, "used": feat.token_bag is not None}
    if feat.token_bag is not None and cfg.token_bag == "auto":
        # The bag's columns come last: the same features without them are the alternative.
        plain = select(x[:, : -feat.token_bag.dim])
        with_bag, without = _cv_score(selection.cv), _cv_score(plain.cv)
        bag_report.update({"cv_with": with_bag, "cv_without": without, "used": with_bag > without})
        if not with_bag > without:
            x, selection, feat.token_bag = x[:, : -feat.token_bag.dim], plain, None
    length, length_report = fit_length_model(x, matrix.completion_tokens, matrix.mask)

    out_dir.mkdir(parents=True, exist_ok=True)
    selection.head.save(out_dir / "quality.npz")
    length.save(out_dir / "length.npz")
    feat_spec = feat.save(out_dir)

    quality = selection.head.predict_proba(x)
    cost = expected_cost(matrix.prompt_tokens, length.predict(x), matrix.models, price_map)
    mean_cost = _mean_observed_cost(matrix)
    cost_scale = float(np.nanmax(mean_cost))
    target = float(np.nanmin(mean_cost) + cfg.default_cost_position * (np.nanmax(mean_cost) - np.nanmin(mean_cost)))
    default_weight = calibrate_weight_for_cost(quality, cost, cost_scale, target)

    probes = build_probe_set(out_dir, selection.head, x, matrix, cfg.probes,
                             Path(cfg.probe_references) if cfg.probe_references else None, cfg.probe_grader, cfg.seed)
    data_hash = outcomes_sha256(rows)
    version = f"{datetime.now(UTC):%Y%m%d%H%M%S}-{data_hash[:8]}-{uuid.uuid4().hex[:4]}"
    manifest = Manifest(
        version=version,
        created_at=datetime.now(UTC).isoformat(),
        models=matrix.models,
        prices={m: price_map[m] for m in matrix.models},
        featurizer={**feat_spec, "name": cfg.featurizer},
        quality={"file": "quality.npz", **selection.params},
        length={"file": "length.npz", "per_model": dict(zip(matrix.models, length_report, strict=True))},
        cv=_jsonable(selection.cv) | {"models": matrix.models, "aux": aux_report, "token_bag": _jsonable(bag_report)},
        data_sha256=data_hash,
        n_train_prompts=len(matrix.prompts),
        train_prompt_sha256=sorted(prompt_key(p) for p in matrix.prompts),
        aux_prompt_sha256=aux_keys,
        cost_scale_usd=cost_scale,
        default_cost_weight=default_weight,
        libraries=library_versions(),
        probes=probes,
    )
    write_manifest(out_dir, manifest)
    return TrainResult(artifact=str(out_dir), version=version, cv=manifest.cv, data_sha256=data_hash)


def _projection_corpus(cfg: TrainConfig, exclude_prompts: Sequence[str]) -> tuple[list[str], set[str], list[dict[str, object]]]:
    """Unlabeled texts for the projection, minus any excluded (held-out) prompt."""
    if not cfg.projection_corpus:
        return [], set(), []
    if not cfg.aux_data_dir:
        raise ValueError("a projection corpus needs aux_data_dir (the shared data directory)")
    excluded = {aux_key(p) for p in exclude_prompts}
    texts: list[str] = []
    report: list[dict[str, object]] = []
    for name in cfg.projection_corpus:
        if name not in CORPORA:
            raise ValueError(f"unknown corpus {name!r}; choose from {sorted(CORPORA)}")
        found = CORPORA[name](Path(cfg.aux_data_dir))
        keep = drop_excluded(found, excluded)
        texts += [t for t, ok in zip(found, keep, strict=True) if ok]
        report.append({"name": f"projection:{name}", "examples": int(keep.sum()), "excluded": int((~keep).sum())})
    return texts, {aux_key(t) for t in texts}, report


def _fit_aux(feat: PromptFeaturizer, cfg: TrainConfig, exclude_prompts: Sequence[str]) -> tuple[list[str], list[dict[str, object]]]:
    """Fit the configured auxiliary regressors onto `feat`; returns the keys of the examples used."""
    if not cfg.aux:
        return [], []
    if not cfg.aux_data_dir:
        raise ValueError("auxiliary regressors need aux_data_dir (the shared data directory)")
    excluded = {aux_key(p) for p in exclude_prompts}
    keys: set[str] = set()
    report: list[dict[str, object]] = []
    for name in cfg.aux:
        if name not in AUX_SOURCES:
            raise ValueError(f"unknown auxiliary source {name!r}; choose from {sorted(AUX_SOURCES)}")
        loader, target_names = AUX_SOURCES[name]
        texts, targets = loader(Path(cfg.aux_data_dir))
        keep = drop_excluded(texts, excluded)
        used = [t for t, ok in zip(texts, keep, strict=True) if ok]
        reg, info = fit_aux(name, target_names, feat.transform_base(used), targets[keep])
        feat.aux.append(reg)
        keys.update(aux_key(t) for t in used)
        report.append({"name": name, "examples": len(used), "excluded": int((~keep).sum()), **info})
    return sorted(keys), report


def _cv_score(cv: dict[str, object]) -> float:
    """Higher is better: stacked out-of-fold routing AIQ when costs were known, else -Brier."""
    aiq = cv.get("stacked_oof_aiq")
    return float(aiq) if isinstance(aiq, float) else -float(cv["calibrated_brier"])  # type: ignore[arg-type]


def _mean_observed_cost(matrix: OutcomeMatrix) -> np.ndarray:
    cost = np.where(matrix.mask, matrix.cost, np.nan)
    return np.nanmean(cost, axis=0)


def _jsonable(value: object) -> dict[str, object]:
    import json

    return json.loads(json.dumps(value, default=float))


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
