"""Held-out evaluation of a router artifact against baselines in the same run.

Every method produces predicted quality and expected cost per (prompt, model);
its curve is traced by its own cost-weight sweep and scored on the *actual*
outcomes and costs of the test rows. The random-mixing baseline is the hull of
the single models; the oracle (true outcomes) is reported as the ceiling only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from contracts.outcomes import OutcomeRow
from router.api import LearnedRouter, load_router
from router.features.aux import aux_key
from router.features.sentence import SentenceEmbedder
from router.lab import metrics
from router.lab.baselines import MlpScores, fit_knn, fit_logistic
from router.lab.matrix import OutcomeMatrix, build_matrix
from router.lab.outcomes import prompt_key
from router.lab.train import calibrate_weight_for_cost, expected_cost
from router.policy import choose_by_utility, cost_weight_grid


class LeakageError(RuntimeError):
    """Test prompts were part of the training data."""

    def __init__(self, count: int) -> None:
        super().__init__(f"{count} test prompt(s) were in the training data")
        self.count = count


class MethodMetrics(BaseModel):
    aiq: float
    apgr: float | None
    cpt50: float | None
    cpt80: float | None
    match_best_cost_fraction: float | None
    quality_at_cheapest: float | None


class BestSingle(BaseModel):
    model: str
    quality: float
    cost: float


class Curve(BaseModel):
    cost: list[float]
    quality: list[float]
    strong_share: list[float] | None = None


class EvalResult(BaseModel):
    router: MethodMetrics
    baselines: dict[str, MethodMetrics]
    best_single: BestSingle
    singles: dict[str, dict[str, float]]
    curves: dict[str, Curve]
    calibration: list[dict[str, float]]
    info: dict[str, Any]

    def public_json(self) -> dict[str, Any]:
        """The stable machine-readable result (keys relied on by outside scripts)."""
        b = self.baselines
        return {
            "router": self.router.model_dump(),
            "baselines": {
                "random": b["random"].model_dump(),
                "knn": b["knn"].model_dump(),
                "oracle": b["oracle"].model_dump(),
                "best_single": self.best_single.model_dump(),
            },
        }


def check_leakage(test: OutcomeMatrix, train_hashes: set[str]) -> int:
    return sum(prompt_key(p) in train_hashes for p in test.prompts)


class _Context:
    """Actual outcomes of the test set and its single-model reference points."""

    def __init__(self, test: OutcomeMatrix) -> None:
        self.score = test.score
        self.cost = test.cost
        self.q_single = test.score.mean(axis=0)
        self.c_single = test.cost.mean(axis=0)
        self.cheap = int(np.argmin(self.c_single))
        self.dear = int(np.argmax(self.c_single))
        self.best = metrics.best_single_index(list(self.q_single), list(self.c_single))
        self.two = test.score.shape[1] == 2
        # RouteLLM's PGR assumes the dearer model is the stronger one.
        self.strong, self.weak = self.dear, 1 - self.dear if self.two else -1
        self.pgr_defined = bool(self.two and self.q_single[self.strong] > self.q_single[self.weak])

    def realized(self, choice: np.ndarray) -> tuple[float, float]:
        rows = np.arange(len(choice))
        return float(self.cost[rows, choice].mean()), float(self.score[rows, choice].mean())

    def curve_metrics(self, costs: Sequence[float], quals: Sequence[float], fractions: np.ndarray | None, pgr: np.ndarray | None) -> MethodMetrics:
        c_min, c_max = float(self.c_single[self.cheap]), float(self.c_single[self.dear])
        return MethodMetrics(
            aiq=metrics.aiq(costs, quals, c_min, c_max),
            apgr=metrics.apgr(fractions, pgr) if pgr is not None else None,
            cpt50=metrics.cpt(fractions, pgr, 0.5) if pgr is not None else None,
            cpt80=metrics.cpt(fractions, pgr, 0.8) if pgr is not None else None,
            match_best_cost_fraction=metrics.match_best_cost_fraction(
                costs, quals, float(self.q_single[self.best]), float(self.c_single[self.best])
            ),
            quality_at_cheapest=metrics.quality_at_cost(costs, quals, c_min),
        )

    def sweep(self, quality: np.ndarray, cost: np.ndarray, cost_scale: float) -> tuple[MethodMetrics, Curve]:
        costs, quals, shares = [], [], []
        for w in cost_weight_grid(quality, cost, cost_scale):
            choice = choose_by_utility(quality, cost, float(w), cost_scale)
            c, q = self.realized(choice)
            costs.append(c)
            quals.append(q)
            shares.append(float((choice == self.strong).mean()) if self.two else float("nan"))
        fractions = pgr = None
        if self.pgr_defined:
            fractions, pgr = metrics.pgr_curve(
                _threshold_scores(quality, cost, self.strong, self.weak), self.score[:, self.weak], self.score[:, self.strong]
            )
        curve = Curve(cost=costs, quality=quals, strong_share=shares if self.two else None)
        return self.curve_metrics(costs, quals, fractions, pgr), curve

    def random_mix(self) -> tuple[MethodMetrics, Curve]:
        costs, quals = list(map(float, self.c_single)), list(map(float, self.q_single))
        fractions = pgr = None
        if self.pgr_defined:
            fractions, pgr = np.array([0.0, 1.0]), np.array([0.0, 1.0])
        return self.curve_metrics(costs, quals, fractions, pgr), Curve(cost=costs, quality=quals)


def _threshold_scores(quality: np.ndarray, cost: np.ndarray, strong: int, weak: int) -> np.ndarray:
    """Per-prompt score whose threshold sweep traces the PGR curve.

    RouteLLM's PGR/APGR/CPT count *calls* to the strong model, i.e. every call
    to a model costs the same. Under that cost model the utility rule's sweep
    over the cost weight sends prompts to the strong model in order of the
    predicted quality gain, so the gain is the score (`cost` is unused here
    on purpose; the AIQ curve uses the real per-prompt costs).
    """
    del cost
    return quality[:, strong] - quality[:, weak]


def evaluate(
    artifact_dir: Path,
    test_rows: Sequence[OutcomeRow],
    train_rows: Sequence[OutcomeRow] | None,
    *,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    router: LearnedRouter | None = None,
    baseline_embedder: str = "minilm",
) -> EvalResult:
    """Raises LeakageError when a test prompt is in the artifact's training data."""
    say = progress or (lambda _msg: None)
    router = router or load_router(artifact_dir, embedding_cache=True)
    manifest = router.manifest
    test = build_matrix(test_rows, manifest.models, manifest.prices)
    if not test.complete:
        raise ValueError("every test prompt needs an outcome for every model in the artifact")
    train_hashes = set(manifest.train_prompt_sha256)
    train = build_matrix(train_rows, manifest.models, manifest.prices) if train_rows else None
    if train is not None:
        train_hashes |= {prompt_key(p) for p in train.prompts}
    leaked = check_leakage(test, train_hashes)
    if manifest.aux_prompt_sha256:
        aux_hashes = set(manifest.aux_prompt_sha256)
        leaked += sum(aux_key(p) in aux_hashes for p in test.prompts)
    if leaked:
        raise LeakageError(leaked)

    ctx = _Context(test)
    scale = manifest.cost_scale_usd
    curves: dict[str, Curve] = {}
    baselines: dict[str, MethodMetrics] = {}

    say("router: featurize + predict")
    x_test = router.featurizer.transform(test.prompts)
    pred = router.predict_features(x_test)
    r_cost = expected_cost(test.prompt_tokens, pred.completion_tokens, test.models, manifest.prices)
    router_metrics, curves["router"] = ctx.sweep(pred.quality, r_cost, scale)

    info: dict[str, Any] = {
        "models": test.models, "n_test_prompts": len(test.prompts), "version": manifest.version,
        "featurizer": manifest.featurizer.get("name"), "quality_model": manifest.quality.get("kind"),
        "strong": test.models[ctx.strong] if ctx.two else None,
        "weak": test.models[ctx.weak] if ctx.two else None, "pgr_defined": ctx.pgr_defined,
    }

    baselines["random"], curves["random"] = ctx.random_mix()
    baselines["oracle"], curves["oracle"] = ctx.sweep(test.score, test.cost, scale)

    calibration: list[dict[str, float]] = []
    if train is not None:
        # Baselines see the plain embedding: MiniLM by default, or ("router") the
        # router's own embedder without its text features.
        if baseline_embedder == "router":
            e_train = router.featurizer.embedder.transform(train.prompts)
            e_test = router.featurizer.embedder.transform(test.prompts)
        else:
            say("baselines: embed train/test with MiniLM")
            embed = SentenceEmbedder(manifest.featurizer.get("embedder", {}).get("teacher")
                                     or manifest.featurizer.get("embedder", {}).get("model") or "all-MiniLM-L6-v2")
            e_train, e_test = embed.transform(train.prompts), embed.transform(test.prompts)
        info["baseline_embedder"] = baseline_embedder if baseline_embedder == "router" else "minilm"
        mean_tokens = np.array([train.completion_tokens[train.mask[:, j], j].mean() for j in range(len(test.models))])
        b_cost = expected_cost(test.prompt_tokens, np.tile(mean_tokens, (len(test.prompts), 1)), test.models, manifest.prices)
        say("baseline: kNN (k by CV on train)")
        knn, k = fit_knn(e_train, train.score, train.mask, seed=seed)
        baselines["knn"], curves["knn"] = ctx.sweep(knn.predict(e_test), b_cost, scale)
        info["knn_k"] = k
        say("baseline: logistic")
        logit, c = fit_logistic(e_train, train.score, train.mask, seed=seed)
        baselines["logistic"], curves["logistic"] = ctx.sweep(logit.predict(e_test), b_cost, scale)
        info["logistic_c"] = c
        say("baseline: MLP")
        mlp = MlpScores(seed=seed).fit(e_train, train.score, train.mask)
        baselines["mlp"], curves["mlp"] = ctx.sweep(mlp.predict(e_test), b_cost, scale)
        say("calibration transfer: train sample -> test")
        calibration = calibration_transfer(router, train, test, ctx)
    else:
        raise ValueError("evaluation needs the training rows for the kNN/logistic/MLP baselines (--train)")

    singles = {
        m: {"quality": float(ctx.q_single[j]), "cost": float(ctx.c_single[j])} for j, m in enumerate(test.models)
    }
    best = BestSingle(model=test.models[ctx.best], quality=float(ctx.q_single[ctx.best]), cost=float(ctx.c_single[ctx.best]))
    return EvalResult(router=router_metrics, baselines=baselines, best_single=best, singles=singles,
                      curves=curves, calibration=calibration, info=info)


def calibration_transfer(router: LearnedRouter, train: OutcomeMatrix, test: OutcomeMatrix, ctx: _Context) -> list[dict[str, float]]:
    """Calibrate the cost weight on the training prompts, report what it does on test.

    For two-model sets the target is a strong-model share (as RouteLLM does);
    otherwise a target average cost between the cheapest and dearest model.
    """
    from router.lab.calibrate import calibrate_for_cost, calibrate_for_share

    manifest = router.manifest
    x_tr = router.featurizer.transform(train.prompts)
    p_tr = router.predict_features(x_tr)
    c_tr = expected_cost(train.prompt_tokens, p_tr.completion_tokens, train.models, manifest.prices)
    x_te = router.featurizer.transform(test.prompts)
    p_te = router.predict_features(x_te)
    c_te = expected_cost(test.prompt_tokens, p_te.completion_tokens, test.models, manifest.prices)
    rows: list[dict[str, float]] = []
    if ctx.two:
        for share in (0.2, 0.5, 0.8):
            w, sample_share = calibrate_for_share(p_tr.quality, c_tr, manifest.cost_scale_usd, ctx.strong, share)
            choice = choose_by_utility(p_te.quality, c_te, w, manifest.cost_scale_usd)
            cost, qual = ctx.realized(choice)
            rows.append({"target_strong_share": share, "cost_weight": w, "sample_strong_share": sample_share,
                         "test_strong_share": float((choice == ctx.strong).mean()), "test_quality": qual, "test_cost": cost})
    else:
        lo, hi = float(ctx.c_single.min()), float(ctx.c_single.max())
        for frac in (0.1, 0.25, 0.5):
            target = lo + frac * (hi - lo)
            w, sample_cost = calibrate_for_cost(p_tr.quality, c_tr, manifest.cost_scale_usd, target)
            choice = choose_by_utility(p_te.quality, c_te, w, manifest.cost_scale_usd)
            cost, qual = ctx.realized(choice)
            rows.append({"target_cost": target, "cost_weight": w, "sample_predicted_cost": sample_cost,
                         "test_cost": cost, "test_quality": qual})
    return rows


__all__ = ["EvalResult", "LeakageError", "MethodMetrics", "calibrate_weight_for_cost", "evaluate"]
