"""SIMULATION of the router flywheel on recorded outcomes: label -> train -> compare -> promote.

Nothing here calls a real model. Traffic is the train half of RouteLLM GSM8K (both models'
recorded responses) or, with `--dataset llmrouter`, of LLMRouter (9 models, scores only: each
answer is a placeholder naming its model). testkit.replay_upstream answers each candidate with
its recorded response, and its judge returns the recorded score flipped with probability
epsilon. Rounds of `--round-size` requests are drawn from the traffic prompts, routed with
explore_rate 0.05; after each round the flywheel labels, trains, compares and promotes.

Two modes, the same flywheel code:
- in process (default): the served router decides every request itself, logging what the
  gateway logs (propensities included), and `router.lab.flywheel.run_round` runs here;
- `--gateway`: a real `ttc serve` routes the requests, sent over HTTP, with the request log on;
  each round then runs `ttc requests export` and `ttc router flywheel` as a user would, and the
  gateway hot-reloads what is promoted (bench/router/flywheel_gateway.py).

After every round the served router's AIQ and APGR are measured on the fixed test half, never
used for training, next to the seed router (100 gold prompts) and the ceiling (all gold train
outcomes) trained in the same run.

    python -m bench.router.flywheel --epsilon 0.15 --seeds 0 --rounds 6 [--gateway]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np

from bench.paths import DATA as SHARED_DATA
from contracts.environment import apply_environment_defaults
from contracts.outcomes import OutcomeRow, read_outcomes
from router.api import load_router
from router.lab.routing_scores import served_metrics
from router.lab.flywheel import FlywheelConfig, FlywheelReport, run_round
from router.lab.importers import read_prices, run_import
from router.lab.label import CompletionOutcome
from router.lab.outcomes import prompt_key
from router.lab.sources import keep_rows
from router.lab.train import TrainConfig, expected_cost, train_router
from router.policy import choose_by_utility
from testkit.replay_upstream import JUDGE, RecordedAnswers

OUT = Path("bench/results/router")
GSM8K = "routellm-gsm8k"
DATASETS = (GSM8K, "llmrouter")
EXPLORE_RATE = 0.05
LABEL_TENANT = "labeler"  # charged for counterfactual answers and judge calls (gateway mode: its own tenant)


def banner(dataset: str, gateway: bool) -> str:
    answers = "recorded answers" if dataset == GSM8K else "placeholder answers (scores only)"
    path = "through a real `ttc serve` gateway and the `ttc` CLI" if gateway else "in process, no gateway"
    return (f"SIMULATION: {dataset}, {answers}, scripted judge (recorded score flipped w.p. epsilon), "
            f"traffic {path}")


class RecordedModels:
    """router.lab.label.ChargedModels over testkit.replay_upstream's recorded answers and judge, in process."""

    def __init__(self, answers: RecordedAnswers) -> None:
        self.answers = answers
        self.chat_models = answers.models + (JUDGE,)
        self.spent = 0.0

    async def complete(self, model: str, messages: list[dict[str, str]], max_tokens: int) -> CompletionOutcome:
        result = self.answers.complete(model, messages[-1]["content"])
        self.spent += result.cost_usd
        return result

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
                "request_id": f"r{round_no}-{i}", "tenant": "sim", "served_model": models[served], "status": "200",
                "explored": explored, "propensity": propensity, "prompt_tokens": row.prompt_tokens,
                "completion_tokens": row.completion_tokens, "cost_usd": row.cost_usd,
                "messages": [{"role": "user", "content": prompt}],
                # What the replay upstream would have answered: a placeholder where only scores were kept.
                "response_text": RecordedAnswers.text(row)}) + "\n")


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


class Rounds(Protocol):
    """How a round's traffic is served and its flywheel run: in this process, or through a gateway."""

    def run(self, round_no: int, traffic: list[str], config: FlywheelConfig) -> tuple[FlywheelReport, dict[str, object]]:
        """Serve `traffic`, log it to `config.log`, run one flywheel round; the report and what was served."""
        ...


class InProcessRounds:
    """The router decides each request itself, logging what the gateway would log (explorations and
    their propensities), and `run_round` runs in this process."""

    def __init__(self, answers: RecordedAnswers, by_cell: dict[tuple[str, str], OutcomeRow], models: list[str],
                 rng: np.random.Generator, serving: Path, feedback_rows: int) -> None:
        self.models_api = RecordedModels(answers)
        self.by_cell, self.models, self.rng, self.serving = by_cell, models, rng, serving
        self.served_truth: dict[str, float] = {}
        self.feedback = RecordedFeedback(self.served_truth, feedback_rows) if feedback_rows else None

    def run(self, round_no: int, traffic: list[str], config: FlywheelConfig) -> tuple[FlywheelReport, dict[str, object]]:
        serve_round(self.serving, traffic, self.by_cell, self.models, self.rng, EXPLORE_RATE, round_no, config.log)
        for line in config.log.read_text().splitlines():
            entry = json.loads(line)
            cell = (prompt_key(entry["messages"][0]["content"]), entry["served_model"])
            self.served_truth[entry["request_id"]] = self.by_cell[cell].score
        return asyncio.run(run_round(config, self.models_api, self.feedback)), {}


def run(seed: int, epsilon: float, rounds: int, round_size: int, work: Path, lenient: bool = False,
        feedback_rows: int = 0, gate_metric: str = "aiq", dataset: str = GSM8K, gateway: bool = False,
        grading: str = "absolute", gate_data: str = "holdout") -> dict:
    data = work / (f"data-{seed}" if dataset == GSM8K else f"data-{dataset}-{seed}")
    if not (data / "train.jsonl").exists():
        run_import(dataset, SHARED_DATA, data, seed=seed)
    train_rows, test_rows = read_outcomes(data / "train.jsonl"), read_outcomes(data / "test.jsonl")
    prices = read_prices(data / "prices.json")
    models = sorted({r.model for r in train_rows})
    by_cell = {(prompt_key(r.prompt), r.model): r for r in train_rows}
    prompts = sorted({r.prompt for r in train_rows}, key=prompt_key)
    rng = np.random.default_rng(seed)
    seed_prompts = set(rng.choice(prompts, 100, replace=False))
    gold_seed = [r.model_copy(update={"source": "gold"}) for r in train_rows if r.prompt in seed_prompts]
    traffic_pool = [p for p in prompts if p not in seed_prompts]
    mode = "-gateway" if gateway else ""
    prefix = "" if dataset == GSM8K else f"{dataset}-"
    run_dir = work / (f"{prefix}seed{seed}-eps{epsilon}{'-lenient' if lenient else ''}-fb{feedback_rows}-{gate_metric}{mode}"
                      + ("-pairwise" if grading == "pairwise" else "") + ("-crossfit" if gate_data == "crossfit" else ""))
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    seed_art = train(gold_seed, run_dir / "seed-router", prices, seed)
    ceiling = work / (f"ceiling-{seed}" if dataset == GSM8K else f"ceiling-{dataset}-{seed}")
    if not (ceiling / "manifest.json").exists():
        train(train_rows, ceiling, prices, seed)
    serving = run_dir / "serving"
    shutil.copytree(seed_art, serving)
    reference = {"seed": served_metrics(load_router(seed_art), test_rows),
                 "ceiling": served_metrics(load_router(ceiling), test_rows)}
    answers = RecordedAnswers(train_rows, epsilon, seed, lenient)
    cell_truth = {(prompt_key(r.prompt), r.model): r.score for r in train_rows}
    with ExitStack() as stack:
        if gateway:
            from bench.router.flywheel_gateway import GatewayRounds

            server_prices = {m: prices[m].model_dump() for m in models}
            driver: Rounds = stack.enter_context(GatewayRounds(answers, server_prices, serving, run_dir, traffic_pool[0],
                                                               feedback_rows))
        else:
            driver = InProcessRounds(answers, by_cell, models, rng, serving, feedback_rows)
        # Pairwise grading compares with the most expensive candidate's answer (the strongest, here).
        strongest = max(models, key=lambda m: (prices[m].output_per_1m, prices[m].input_per_1m))
        history = [run_one(driver, round_no, rng, traffic_pool, round_size, rounds, serving, run_dir, test_rows,
                           models, seed, gate_metric, cell_truth, grading, strongest, gate_data)
                   for round_no in range(1, rounds + 1)]
    return {"seed": seed, "epsilon": epsilon, "lenient_judge": lenient, "feedback_rows": feedback_rows, "gate_metric": gate_metric,
            "grading": grading, "gate_data": gate_data,
            "dataset": dataset, "mode": "gateway" if gateway else "in-process", "reference": reference, "rounds": history}


def run_one(driver: Rounds, round_no: int, rng: np.random.Generator, traffic_pool: list[str], round_size: int,
            rounds: int, serving: Path, run_dir: Path, test_rows: list[OutcomeRow], models: list[str], seed: int,
            gate_metric: str, cell_truth: dict[tuple[str, str], float], grading: str = "absolute",
            reference: str | None = None, gate_data: str = "holdout") -> dict:
    """One round through `driver`, and the served router measured on the test half before and after."""
    started = time.time()
    traffic = list(rng.choice(traffic_pool, round_size, replace=True))
    champion_metrics = served_metrics(load_router(serving), test_rows)
    config = FlywheelConfig(gateway_config=run_dir / "unused.yaml", tenant=LABEL_TENANT, log=run_dir / f"log-{round_no}.jsonl",
                            artifact=serving, judge=JUDGE, candidates=models, sample=round_size, budget_usd=1e9,
                            rounds=rounds, n_boot=1000, cv_folds=3, seed=seed, gate_metric=gate_metric,
                            grading=grading, reference=reference if grading == "pairwise" else None, gate_data=gate_data)
    report, served_by = driver.run(round_no, traffic, config)
    after = served_metrics(load_router(serving), test_rows)
    challenger = served_metrics(load_router(report.challenger), test_rows) if report.challenger else None
    promoted = bool(report.promote and report.promote.promoted)
    entry = {
        "round": round_no, "requests": round_no * round_size, "promoted": promoted,
        "gate": report.compare.gate.model_dump() if report.compare else None,
        "calibration": report.label.calibration.model_dump(), "judge_weight": report.judge_weight,
        "label_accuracy": label_accuracy(serving.parent / f"{serving.name}.flywheel", cell_truth),
        "label_spent_usd": report.label.spent_usd, "label_failed_calls": report.label.failed_calls,
        "heldout_rows": report.heldout_rows, "train_rows": report.train_rows,
        "served": after, "champion_before": champion_metrics, "challenger_on_test": challenger,
        "worse_than_champion": promoted and after["aiq"] < champion_metrics["aiq"],
        "offpolicy": report.compare.offpolicy.model_dump() if report.compare and report.compare.offpolicy else None,
        "gateway": served_by or None, "seconds": round(time.time() - started, 1), "note": report.note,
    }
    print(f"seed {seed} round {round_no}: promoted={promoted} served AIQ {after['aiq']:.4f} APGR {after['apgr']} "
          f"({entry['seconds']}s){' gateway ' + json.dumps(served_by) if served_by else ''}", flush=True)
    return entry


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    # APGR is defined for two models only; with more (LLMRouter's nine) the left panel shows AIQ.
    metric = "apgr" if all(res["reference"]["seed"]["apgr"] is not None for res in results) else "aiq"
    for res in results:
        label = f"eps={res['epsilon']} seed={res['seed']} fb={res['feedback_rows']}"
        xs = [0] + [r["requests"] for r in res["rounds"]]
        axes[0].plot(xs, [res["reference"]["seed"][metric]] + [r["served"][metric] for r in res["rounds"]], marker="o", label=label)
        axes[1].plot([res["reference"]["seed"]["default_cost_usd"]] + [r["served"]["default_cost_usd"] for r in res["rounds"]],
                     [res["reference"]["seed"]["default_quality"]] + [r["served"]["default_quality"] for r in res["rounds"]],
                     marker="o", label=label)
        axes[0].axhline(res["reference"]["ceiling"][metric], linestyle="--", color="grey")
        axes[1].scatter([res["reference"]["ceiling"]["default_cost_usd"]], [res["reference"]["ceiling"]["default_quality"]],
                        marker="*", s=120, color="grey")
    name = metric.upper()
    axes[0].set(xlabel="judged requests", ylabel=f"served router {name} (test half)", title=f"SIMULATION: {name} per round (dashed: gold ceiling)")
    axes[1].set(xlabel="mean cost per prompt, USD (default cost weight)", ylabel="quality (test half)",
                title="SIMULATION: served operating point per round (star: ceiling)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    apply_environment_defaults()
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
                        help="users' feedback on this many served answers in total (ground truth for calibration; "
                             "with --gateway, posted to POST /v1/feedback)")
    parser.add_argument("--dataset", default=GSM8K, choices=DATASETS)
    parser.add_argument("--grading", default="absolute", choices=["absolute", "pairwise"],
                        help="the judge grades each answer, or compares it with the most expensive model's")
    parser.add_argument("--gateway", action="store_true",
                        help="route the traffic through a real `ttc serve` and run each round with the `ttc` CLI")
    parser.add_argument("--gate-data", default="holdout", choices=["holdout", "crossfit"],
                        help="the gate scores a held-out share of the labels, or every label by cross-fitting")
    args = parser.parse_args()
    print(banner(args.dataset, args.gateway), flush=True)
    results = [run(seed, eps, args.rounds, args.round_size, args.work, args.lenient_judge, fb, args.gate_metric,
                   args.dataset, args.gateway, args.grading, args.gate_data)
               for eps in args.epsilon for fb in args.feedback_rows for seed in args.seeds]
    OUT.mkdir(parents=True, exist_ok=True)
    payload = {"simulation": banner(args.dataset, args.gateway), "date": datetime.now(UTC).isoformat(), "args": vars(args) | {"work": str(args.work)},
               "results": results}
    (OUT / f"{args.name}.json").write_text(json.dumps(payload, indent=2, default=float) + "\n")
    plot(results, OUT / f"{args.name}.png")
    print(banner(args.dataset, args.gateway), flush=True)
    print(json.dumps([{"seed": r["seed"], "epsilon": r["epsilon"], "seed_apgr": r["reference"]["seed"]["apgr"],
                       "ceiling_apgr": r["reference"]["ceiling"]["apgr"], "seed_aiq": r["reference"]["seed"]["aiq"],
                       "ceiling_aiq": r["reference"]["ceiling"]["aiq"], "served_aiq": [x["served"]["aiq"] for x in r["rounds"]],
                       "served_apgr": [x["served"]["apgr"] for x in r["rounds"]],
                       "promoted": [x["promoted"] for x in r["rounds"]], "feedback_rows": r["feedback_rows"],
                       "label_accuracy": [x["label_accuracy"] for x in r["rounds"]],
                       "worse_than_champion": [x["worse_than_champion"] for x in r["rounds"]]} for r in results], indent=1))


if __name__ == "__main__":
    main()
