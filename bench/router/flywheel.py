"""SIMULATION of the router flywheel on RouteLLM GSM8K: label -> train -> compare -> promote.

Nothing here calls a real model. Traffic is the train half of RouteLLM GSM8K (both models'
recorded responses); a scripted "upstream" answers each candidate with its recorded response,
and the judge returns the recorded correctness flipped with probability epsilon. The served
router decides every request (explore_rate 0.05, propensities logged as the gateway logs them),
in rounds of `--round-size` requests drawn from the traffic prompts; after each round
`router.lab.flywheel.run_round` (the code behind `ttc router flywheel`) labels, trains, compares
and promotes. The gateway's HTTP path and ledger are not in this loop (they are tested
separately); the flywheel code is the same.

After every round the served router's AIQ and APGR are measured on the fixed test half, never
used for training, next to the seed router (100 gold outcomes) and the ceiling (all gold train
outcomes) trained in the same run.

    python -m bench.router.flywheel --epsilon 0.15 --seeds 0 --rounds 6
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.paths import DATA as SHARED_DATA
from contracts.outcomes import OutcomeRow, read_outcomes
from router.api import load_router
from router.lab.compare import served_metrics
from router.lab.flywheel import FlywheelConfig, run_round
from router.lab.importers import read_prices, run_import
from router.lab.label import CompletionResult
from router.lab.outcomes import prompt_key
from router.lab.sources import keep_rows
from router.lab.train import TrainConfig, train_router
from router.policy import choose_by_utility
from router.lab.train import expected_cost

OUT = Path("bench/results/router")
BANNER = "SIMULATION: recorded RouteLLM GSM8K answers, scripted judge (recorded correctness flipped w.p. epsilon)"


class RecordedModels:
    """router.lab.label.ChargedModels over recorded answers, with a noisy scripted judge."""

    def __init__(self, rows: list[OutcomeRow], epsilon: float, seed: int, lenient: bool = False) -> None:
        self.by_prompt = {(prompt_key(r.prompt), r.model): r for r in rows}
        self.truth = {(prompt_key(r.prompt), (r.response or "").strip()): r.score for r in rows}
        self.chat_models = tuple(sorted({r.model for r in rows})) + ("judge",)
        self.epsilon = epsilon
        self.lenient = lenient  # grades 9 (right) / 6 (wrong): the default cut counts both as right
        self.rng = random.Random(seed)
        self.spent = 0.0

    async def complete(self, model: str, messages: list[dict[str, str]], max_tokens: int) -> CompletionResult:
        if model == "judge":
            body = messages[-1]["content"]
            request, _, rest = body.partition("\n\nAnswer:\n")
            answer = rest.rsplit("\n\nGrade (1-10):", 1)[0]
            right = self.truth[(prompt_key(request.removeprefix("Request:\n")), answer.strip())] >= 0.5
            if self.rng.random() < self.epsilon:
                right = not right
            grade = ("9" if right else "6") if self.lenient else ("10" if right else "1")
            return CompletionResult(text=grade, prompt_tokens=0, completion_tokens=0, cost_usd=0.0)
        row = self.by_prompt[(prompt_key(messages[-1]["content"]), model)]
        self.spent += row.cost_usd or 0.0
        return CompletionResult(text=row.response or "", prompt_tokens=row.prompt_tokens or 0,
                                completion_tokens=row.completion_tokens or 0, cost_usd=row.cost_usd or 0.0)

    async def spent_usd(self) -> float:
        return self.spent

    async def aclose(self) -> None:
        return None


def serve_round(artifact: Path, traffic: list[str], rows: dict[tuple[str, str], OutcomeRow], models: list[str],
                rng: np.random.Generator, explore_rate: float, round_no: int, path: Path) -> None:
    """What the gateway logs for these requests: the router's pick (or an exploration draw)."""
    router = load_router(artifact, embedding_cache=True)
    pred = router.predict(traffic)
    order = [router.models.index(m) for m in models]
    tokens = np.array([rows[(prompt_key(p), models[0])].prompt_tokens or 0 for p in traffic], dtype=float)
    cost = expected_cost(tokens, pred.completion_tokens[:, order], models, router.manifest.prices)
    pick = choose_by_utility(pred.quality[:, order], cost, router.default_cost_weight, router.cost_scale_usd)
    with path.open("w", encoding="utf-8") as handle:
        for i, prompt in enumerate(traffic):
            explored = rng.random() < explore_rate
            served = int(rng.integers(len(models))) if explored else int(pick[i])
            propensity = (1 - explore_rate) * (served == pick[i]) + explore_rate / len(models)
            row = rows[(prompt_key(prompt), models[served])]
            handle.write(json.dumps({
                "request_id": f"r{round_no}-{i}", "tenant": "sim", "served_model": models[served], "status": "ok",
                "explored": explored, "propensity": propensity, "prompt_tokens": row.prompt_tokens,
                "completion_tokens": row.completion_tokens, "cost_usd": row.cost_usd,
                "messages": [{"role": "user", "content": prompt}], "response_text": row.response}) + "\n")


def train(rows: list[OutcomeRow], out: Path, prices: dict, seed: int) -> Path:
    train_router(rows, out, prices, TrainConfig(featurizer="static", cv_folds=3, seed=seed, token_bag="off",
                                                task_prior=False))
    keep_rows(out, rows)
    return out


class RecordedFeedback:
    """Users' feedback on served answers (their recorded correctness), for the first `limit` requests asked about."""

    def __init__(self, log_rows: dict[str, float], limit: int) -> None:
        self.truth = log_rows
        self.left = limit

    def __call__(self, requests: list[tuple[str, str]]) -> dict[str, float]:
        out = {}
        for _, request_id in requests:
            if self.left > 0 and request_id in self.truth:
                out[request_id] = self.truth[request_id]
                self.left -= 1
        return out


def label_accuracy(reports: Path, truth: dict[tuple[str, str], float]) -> dict[str, float] | None:
    """The newest round's judge labels against the recorded correctness: plain accuracy, and
    balanced accuracy (mean of the hit rates on right and on wrong answers: 0.5 = no information)."""
    rounds = sorted(p for p in reports.glob("round-*") if p.is_dir())
    if not rounds or not (rounds[-1] / "labels.jsonl").exists():
        return None
    judged = [r for r in read_outcomes(rounds[-1] / "labels.jsonl") if r.source == "judge"]
    said = np.array([r.score >= 0.5 for r in judged])
    right = np.array([truth[(prompt_key(r.prompt), r.model)] >= 0.5 for r in judged])
    if not len(judged) or right.all() or not right.any():
        return None
    return {"accuracy": float((said == right).mean()),
            "balanced_accuracy": float((said[right].mean() + (~said[~right]).mean()) / 2)}


def run(seed: int, epsilon: float, rounds: int, round_size: int, work: Path, lenient: bool = False,
        feedback_rows: int = 0, gate_metric: str = "aiq") -> dict:
    data = work / f"data-{seed}"
    if not (data / "train.jsonl").exists():
        run_import("routellm-gsm8k", SHARED_DATA, data, seed=seed)
    train_rows, test_rows = read_outcomes(data / "train.jsonl"), read_outcomes(data / "test.jsonl")
    prices = read_prices(data / "prices.json")
    models = sorted({r.model for r in train_rows})
    by_cell = {(prompt_key(r.prompt), r.model): r for r in train_rows}
    prompts = sorted({r.prompt for r in train_rows}, key=prompt_key)
    rng = np.random.default_rng(seed)
    seed_prompts = set(rng.choice(prompts, 100, replace=False))
    gold_seed = [r.model_copy(update={"source": "gold"}) for r in train_rows if r.prompt in seed_prompts]
    traffic_pool = [p for p in prompts if p not in seed_prompts]
    run_dir = work / f"seed{seed}-eps{epsilon}{'-lenient' if lenient else ''}-fb{feedback_rows}-{gate_metric}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    seed_art = train(gold_seed, run_dir / "seed-router", prices, seed)
    ceiling = work / f"ceiling-{seed}"
    if not (ceiling / "manifest.json").exists():
        train(train_rows, ceiling, prices, seed)
    serving = run_dir / "serving"
    shutil.copytree(seed_art, serving)
    reference = {"seed": served_metrics(load_router(seed_art), test_rows),
                 "ceiling": served_metrics(load_router(ceiling), test_rows)}
    history = []
    models_api = RecordedModels(train_rows, epsilon, seed, lenient)
    served_truth: dict[str, float] = {}
    feedback = RecordedFeedback(served_truth, feedback_rows) if feedback_rows else None
    cell_truth = {(prompt_key(r.prompt), r.model): r.score for r in train_rows}
    for round_no in range(1, rounds + 1):
        started = time.time()
        traffic = list(rng.choice(traffic_pool, round_size, replace=True))
        log = run_dir / f"log-{round_no}.jsonl"
        serve_round(serving, traffic, by_cell, models, rng, 0.05, round_no, log)
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            served_truth[entry["request_id"]] = by_cell[(prompt_key(entry["messages"][0]["content"]), entry["served_model"])].score
        champion_metrics = served_metrics(load_router(serving), test_rows)
        config = FlywheelConfig(gateway_config=run_dir / "unused.yaml", tenant="sim", log=log, artifact=serving,
                                judge="judge", candidates=models, sample=round_size, budget_usd=1e9,
                                rounds=rounds, n_boot=1000, cv_folds=3, seed=seed, gate_metric=gate_metric)
        report = asyncio.run(run_round(config, models_api, feedback))
        after = served_metrics(load_router(serving), test_rows)
        challenger = served_metrics(load_router(report.challenger), test_rows) if report.challenger else None
        promoted = bool(report.promote and report.promote.promoted)
        history.append({
            "round": round_no, "requests": round_no * round_size, "promoted": promoted,
            "gate": report.compare.gate.model_dump() if report.compare else None,
            "calibration": report.label.calibration.model_dump(), "judge_weight": report.judge_weight,
            "label_accuracy": label_accuracy(serving.parent / f"{serving.name}.flywheel", cell_truth),
            "heldout_rows": report.heldout_rows, "train_rows": report.train_rows,
            "served": after, "champion_before": champion_metrics, "challenger_on_test": challenger,
            "worse_than_champion": promoted and after["aiq"] < champion_metrics["aiq"],
            "offpolicy": report.compare.offpolicy.model_dump() if report.compare and report.compare.offpolicy else None,
            "seconds": round(time.time() - started, 1), "note": report.note,
        })
        print(f"seed {seed} eps {epsilon} round {round_no}: promoted={promoted} served AIQ {after['aiq']:.4f} "
              f"APGR {after['apgr']} ({history[-1]['seconds']}s)", flush=True)
    return {"seed": seed, "epsilon": epsilon, "lenient_judge": lenient, "feedback_rows": feedback_rows, "gate_metric": gate_metric,
            "reference": reference, "rounds": history}


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for res in results:
        label = f"eps={res['epsilon']} seed={res['seed']} fb={res['feedback_rows']}"
        xs = [0] + [r["requests"] for r in res["rounds"]]
        axes[0].plot(xs, [res["reference"]["seed"]["apgr"]] + [r["served"]["apgr"] for r in res["rounds"]], marker="o", label=label)
        axes[1].plot([res["reference"]["seed"]["default_cost_usd"]] + [r["served"]["default_cost_usd"] for r in res["rounds"]],
                     [res["reference"]["seed"]["default_quality"]] + [r["served"]["default_quality"] for r in res["rounds"]],
                     marker="o", label=label)
        axes[0].axhline(res["reference"]["ceiling"]["apgr"], linestyle="--", color="grey")
        axes[1].scatter([res["reference"]["ceiling"]["default_cost_usd"]], [res["reference"]["ceiling"]["default_quality"]],
                        marker="*", s=120, color="grey")
    axes[0].set(xlabel="judged requests", ylabel="served router APGR (test half)", title="SIMULATION: APGR per round (dashed: gold ceiling)")
    axes[1].set(xlabel="mean cost per prompt, USD (default cost weight)", ylabel="quality (test half)",
                title="SIMULATION: served operating point per round (star: ceiling)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epsilon", type=float, nargs="+", default=[0.15])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--round-size", type=int, default=500)
    parser.add_argument("--work", type=Path, default=Path("/tmp/ttc-flywheel"))
    parser.add_argument("--name", default="FLYWHEEL-gsm8k")
    parser.add_argument("--gate-metric", default="aiq", choices=["aiq", "apgr", "quality_at_matched_cost"])
    parser.add_argument("--lenient-judge", action="store_true", help="judge grades 9 right / 6 wrong (default cut miscalibrated)")
    parser.add_argument("--feedback-rows", type=int, nargs="+", default=[0],
                        help="users' feedback on this many served answers in total (ground truth for calibration)")
    args = parser.parse_args()
    print(BANNER, flush=True)
    results = [run(seed, eps, args.rounds, args.round_size, args.work, args.lenient_judge, fb, args.gate_metric)
               for eps in args.epsilon for fb in args.feedback_rows for seed in args.seeds]
    OUT.mkdir(parents=True, exist_ok=True)
    payload = {"simulation": BANNER, "date": datetime.now(UTC).isoformat(), "args": vars(args) | {"work": str(args.work)},
               "results": results}
    (OUT / f"{args.name}.json").write_text(json.dumps(payload, indent=2, default=float) + "\n")
    plot(results, OUT / f"{args.name}.png")
    print(json.dumps([{"seed": r["seed"], "epsilon": r["epsilon"], "seed_apgr": r["reference"]["seed"]["apgr"],
                       "ceiling_apgr": r["reference"]["ceiling"]["apgr"],
                       "served_apgr": [x["served"]["apgr"] for x in r["rounds"]],
                       "promoted": [x["promoted"] for x in r["rounds"]], "feedback_rows": r["feedback_rows"],
                       "label_accuracy": [x["label_accuracy"] for x in r["rounds"]],
                       "worse_than_champion": [x["worse_than_champion"] for x in r["rounds"]]} for r in results], indent=1))


if __name__ == "__main__":
    main()
