"""Adaptive's learned stopping policy on problems it was never developed on.

    python bench/strategies_transfer.py [--seeds 20] [--perms 40] [--token-budget 0.38]

The value policy (strategies/value_policy.py) and its settings were developed on the committed
SmolLM2-135M recording of MAWPS single-operation problems, with cross-fitting but with the
held-out results in view. This script is the check that choice could not influence: the policy
is fitted once on that whole recording, with the headline's settings, and evaluated on a second
recording made afterwards, 100 MAWPS add/sub problems with one-digit numbers, recorded the same
way (same model, few-shot turns, temperature, 40-token cap, extractor):

    python -m gateway.cli strategies record --config CONFIG_P2 --prompts mawps_addsub_1digit.jsonl \\
        --shots tests/fixtures/arith_shots.jsonl --samples 16 --out smollm2_mawps_addsub_16.jsonl \\
        --max-tokens 40 --temperature 0.7 --stop '\\n\\n' --extractor final_number

(CONFIG_P2 and the way the prompt file was cut are in bench/results/strategies/live_smollm2.md and
below.) Accuracy and tokens come from the real adaptive strategy over a ReplayGenerator, 20 draw
orders per problem; CIs are 95% bootstraps over problems, paired for ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from strategies.evaluation import (
    EvalResult,
    bootstrap_ci,
    bootstrap_ratio_ci,
    evaluate,
    per_problem,
    to_policy_problem,
)
from strategies.replay import load_replay
from strategies.spec import TTCSpec
from strategies.value_policy import fit_value_policy

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "tests" / "fixtures" / "smollm2_mawps_singleop_16.jsonl"
TEST = REPO / "tests" / "fixtures" / "smollm2_mawps_addsub_16.jsonl"
OUT = REPO / "bench" / "results" / "strategies"
CUT = ("python -c \"import json, re; rows = [json.loads(l) for l in open('../shared/data/math/mawps.jsonl')]; "
       "keep = [r for r in rows if r['type'] == 'addsub' and re.findall(r'\\d+(?:\\.\\d+)?', r['input']) and "
       "max(float(x) for x in re.findall(r'\\d+(?:\\.\\d+)?', r['input'])) < 10][:100]; "
       "open('mawps_addsub_1digit.jsonl', 'w').writelines(json.dumps(r) + '\\n' for r in keep)\"")


def shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def pct(t: tuple[float, float, float]) -> str:
    return f"{100 * t[0]:.1f}% [{100 * t[1]:.1f}, {100 * t[2]:.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--perms", type=int, default=40)
    parser.add_argument("--token-budget", type=float, default=0.38)
    parser.add_argument("--train", type=Path, default=TRAIN)
    parser.add_argument("--test", type=Path, default=TEST)
    args = parser.parse_args()

    train, test = load_replay(args.train), load_replay(args.test)
    max_n = len(test[0].samples)
    policy = fit_value_policy([to_policy_problem(p) for p in train], max_n=max_n, perms=args.perms, seed=0,
                              token_budget=args.token_budget)
    runs: dict[str, EvalResult] = {
        "single": evaluate(test, TTCSpec(strategy="best_of_n", n=1), args.seeds, label="single"),
        f"majority@{max_n}": evaluate(test, TTCSpec(strategy="best_of_n", n=max_n), args.seeds, label=f"majority@{max_n}"),
        "adaptive (value policy fitted on the single-op recording)": evaluate(
            test, TTCSpec(strategy="adaptive", n=max_n), args.seeds, policy_for=lambda _p: policy, label="adaptive"),
    }
    maj, adaptive = runs[f"majority@{max_n}"], runs["adaptive (value policy fitted on the single-op recording)"]
    acc_ratio = bootstrap_ratio_ci(per_problem(adaptive.correct), per_problem(maj.correct))
    tok_ratio = bootstrap_ratio_ci(per_problem(adaptive.tokens), per_problem(maj.tokens))
    result = {
        "train": shown(args.train), "test": shown(args.test),
        "train_problems": len(train), "test_problems": len(test), "seeds": args.seeds, "perms": args.perms,
        "token_budget": args.token_budget, "policy_meta": policy.meta,
        "runs": {name: {"accuracy_ci": bootstrap_ci(per_problem(r.correct)),
                        "mean_completion_tokens": r.mean_completion_tokens, "mean_calls": r.mean_calls}
                 for name, r in runs.items()},
        "adaptive_accuracy_vs_majority": acc_ratio, "adaptive_tokens_vs_majority": tok_ratio,
        "target_met": acc_ratio[0] >= 0.98 and tok_ratio[0] <= 0.40,
    }
    single_accuracy = runs["single"].accuracy
    # The floor: below 10% single-sample accuracy the targets cannot be measured.
    result["measurable"] = single_accuracy >= 0.10
    lines = [
        "# Adaptive's stopping policy on a recording it was not developed on",
        "",
        f"Generated by `python bench/strategies_transfer.py --seeds {args.seeds} --perms {args.perms} "
        f"--token-budget {args.token_budget}`.",
        "",
        f"Policy: `strategies/value_policy.py`, fitted once on all {len(train)} problems of `{result['train']}` "
        f"(MAWPS single-op), token budget {args.token_budget} of drawing all {max_n}, {args.perms} draw orders. "
        f"Test: `{result['test']}`, {len(test)} MAWPS add/sub problems with one-digit numbers, recorded after the "
        "policy's design was fixed, same model and settings. Nothing about the test recording is read by the fit.",
        "",
        "| run | accuracy [95% CI] | completion tokens | calls |",
        "|---|---|---|---|",
    ]
    for name, r in runs.items():
        lines.append(f"| {name} | {pct(bootstrap_ci(per_problem(r.correct)))} | {r.mean_completion_tokens:.1f} | "
                     f"{r.mean_calls:.2f} |")
    lines += [
        "",
        f"- adaptive accuracy as a share of majority@{max_n}'s: {pct(acc_ratio)} (target ≥ 98%)",
        f"- adaptive tokens as a share of majority@{max_n}'s: {pct(tok_ratio)} (target ≤ 40%)",
        f"- target met by the point estimates: {'yes' if result['target_met'] else 'no'}",
        "",
    ]
    if not result["measurable"]:
        lines += [
            f"**The targets cannot be measured on this set**: single-sample accuracy is {100 * single_accuracy:.1f}%, "
            "below the issue's 10% floor, so the accuracy ratio rests on a handful of problems (see its CI). The token "
            "share still says how the token budget calibrated on the training recording carries over to another one.",
            "",
        ]
    lines += [
        "How the test prompts were cut from the shared data (first 100 in file order):",
        "",
        "```",
        CUT,
        "```",
        "",
    ]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "transfer_addsub.md").write_text("\n".join(lines))
    (OUT / "transfer_addsub.json").write_text(json.dumps(result, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
