"""Adaptive's learned stopping policy on recordings it was never developed on.

    python -m bench.strategies.transfer [--check fresh-samples-c|fresh-samples|addsub] [--seeds 20] [--perms 40]
                                        [--token-budget 0.30]

The value policy (strategies/value_policy.py) and its settings were developed on the committed
SmolLM2-135M recording of MAWPS single-operation problems (tests/fixtures/smollm2_mawps_singleop_16.jsonl),
cross-fitted, but with the held-out results in view. These checks serve other recordings with the
headline's settings and nothing fitted on them:

- ``fresh-samples-c``: the same 111 problems, 16 new samples each, recorded (a third run of the same
  recording command) after the current design -- vote weights with the worked-arithmetic check,
  token budget 0.30 -- was committed (3f6a293). Each problem is served by the policy cross-fitted on
  the *other* folds of the first recording (5 folds, fold seed 0, as the headline), so no policy has
  seen that problem's prompt or samples, and no design choice has seen these samples.
- ``fresh-samples``: the same, on the second recording. It was made after the first design (length
  and echo weights, budget 0.38) and missed the target there by 0.6 points; the arithmetic check and
  the 0.30 budget were then chosen with it in view, so it is no longer a clean check.
- ``addsub``: 100 MAWPS add/sub problems with one-digit numbers, another problem type; the policy is
  fitted once on the whole first recording.

All recordings were made the same way as the first (same model, few-shot turns, temperature,
40-token cap, extractor; CONFIG_P2 is in bench/results/strategies/live_smollm2.md):

    python -m gateway.cli strategies record --config CONFIG_P2 --prompts PROMPTS.jsonl \\
        --shots tests/fixtures/arith_shots.jsonl --samples 16 --out OUT.jsonl \\
        --max-tokens 40 --temperature 0.7 --stop '\\n\\n' --extractor final_number

Accuracy and tokens come from the real adaptive strategy over a ReplayGenerator, 20 draw orders per
problem; CIs are 95% bootstraps over problems, paired for ratios.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from contracts.environment import apply_environment_defaults
from bench.paths import REPO, RESULTS
from strategies.lab.evaluation import (
    EvalResult,
    PolicyFor,
    bootstrap_ci,
    bootstrap_ratio_ci,
    cross_fit_value,
    evaluate,
    per_problem,
    to_policy_problem,
)
from strategies.lab.replay import ReplayProblem, load_replay
from strategies.spec import TTCSpec
from strategies.lab.fit_value_policy import fit_value_policy

FIXTURES = REPO / "tests" / "fixtures"
TRAIN = FIXTURES / "smollm2_mawps_singleop_16.jsonl"
OUT = RESULTS / "strategies"
MAWPS_CUT = ("python -c \"import json, re; rows = [json.loads(l) for l in open('../shared/data/math/mawps.jsonl')]; "
             "keep = [r for r in rows if r['type'] == '{type}' and re.findall(r'\\d+(?:\\.\\d+)?', r['input']) and "
             "max(float(x) for x in re.findall(r'\\d+(?:\\.\\d+)?', r['input'])) < 10]{limit}; "
             "open('PROMPTS.jsonl', 'w').writelines(json.dumps(r) + '\\n' for r in keep)\"")


@dataclass(frozen=True)
class Check:
    test: Path
    title: str
    test_description: str
    prompts: str  # how the prompt file was cut from the shared data
    cross_fit: bool  # same problems as the training recording: serve each by its out-of-fold policy


CHECKS = {
    "fresh-samples-c": Check(
        FIXTURES / "smollm2_mawps_singleop_16_c.jsonl", "fresh samples of the same problems, third recording",
        "the same 111 MAWPS single-op problems, 16 new samples each, recorded after the current design (arithmetic "
        "check, token budget 0.30) was committed; each problem is served by the policy cross-fitted on the other "
        "folds of the first recording (5 folds, fold seed 0), so no policy has seen that problem",
        MAWPS_CUT.format(type="singleop", limit=""), True),
    "fresh-samples": Check(
        FIXTURES / "smollm2_mawps_singleop_16_b.jsonl", "fresh samples of the same problems, second recording",
        "the same 111 MAWPS single-op problems, 16 new samples each, recorded after the first design (length and echo "
        "vote weights, token budget 0.38); the arithmetic check and the 0.30 budget were chosen with it in view; "
        "each problem is served by the policy cross-fitted on the other folds of the first recording (5 folds, "
        "fold seed 0), so no policy has seen that problem", MAWPS_CUT.format(type="singleop", limit=""), True),
    "addsub": Check(
        FIXTURES / "smollm2_mawps_addsub_16.jsonl", "another problem type",
        "100 MAWPS add/sub problems with one-digit numbers, recorded after the policy's design was fixed; the "
        "policy is fitted once on the whole first recording", MAWPS_CUT.format(type="addsub", limit="[:100]"), False),
}


def shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def pct(t: tuple[float, float, float]) -> str:
    return f"{100 * t[0]:.1f}% [{100 * t[1]:.1f}, {100 * t[2]:.1f}]"


def policies_for(check: Check, train: list[ReplayProblem], test: list[ReplayProblem], max_n: int, perms: int,
                 token_budget: float) -> PolicyFor:
    if check.cross_fit:
        if {p.id for p in test} != {p.id for p in train}:
            raise SystemExit(f"{check.test}: not the same problems as {TRAIN}")
        lookup, _ = cross_fit_value(train, folds=5, seed=0, max_n=max_n, perms=perms, token_budget=token_budget)
        return lookup
    policy = fit_value_policy([to_policy_problem(p) for p in train], max_n=max_n, perms=perms, seed=0,
                              token_budget=token_budget)
    return lambda _p: policy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", choices=sorted(CHECKS), default="fresh-samples-c")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--perms", type=int, default=40)
    parser.add_argument("--token-budget", type=float, default=0.30)
    parser.add_argument("--test", type=Path, default=None, help="override the check's recording")
    args = parser.parse_args()

    check = CHECKS[args.check]
    test_path = args.test or check.test
    train, test = load_replay(TRAIN), load_replay(test_path)
    max_n = len(test[0].samples)
    policy_for = policies_for(check, train, test, max_n, args.perms, args.token_budget)
    adaptive_label = "adaptive (value policy, fitted on the first recording)"
    runs: dict[str, EvalResult] = {
        "single": evaluate(test, TTCSpec(strategy="best_of_n", n=1), args.seeds, label="single"),
        f"majority@{max_n}": evaluate(test, TTCSpec(strategy="best_of_n", n=max_n), args.seeds, label=f"majority@{max_n}"),
        adaptive_label: evaluate(test, TTCSpec(strategy="adaptive", n=max_n), args.seeds, policy_for=policy_for,
                                 label="adaptive"),
    }
    maj, adaptive = runs[f"majority@{max_n}"], runs[adaptive_label]
    acc_ratio = bootstrap_ratio_ci(per_problem(adaptive.correct), per_problem(maj.correct))
    tok_ratio = bootstrap_ratio_ci(per_problem(adaptive.tokens), per_problem(maj.tokens))
    single_accuracy = runs["single"].accuracy
    result = {
        "check": args.check, "train": shown(TRAIN), "test": shown(test_path), "train_problems": len(train),
        "test_problems": len(test), "seeds": args.seeds, "perms": args.perms, "token_budget": args.token_budget,
        "runs": {name: {"accuracy_ci": bootstrap_ci(per_problem(r.correct)),
                        "mean_completion_tokens": r.mean_completion_tokens, "mean_calls": r.mean_calls}
                 for name, r in runs.items()},
        "adaptive_accuracy_vs_majority": acc_ratio, "adaptive_tokens_vs_majority": tok_ratio,
        "target_met": acc_ratio[0] >= 0.98 and tok_ratio[0] <= 0.40,
        # The floor: below 10% single-sample accuracy the targets cannot be measured.
        "measurable": single_accuracy >= 0.10,
    }
    lines = [
        f"# Adaptive's stopping policy on another recording: {check.title}",
        "",
        (f"Generated by `python -m bench.strategies.transfer --check {args.check} --seeds {args.seeds} "
        f"--perms {args.perms} --token-budget {args.token_budget}`."),
        "",
        (f"Policy: `strategies/value_policy.py` with the headline's settings (token budget {args.token_budget} of "
        f"drawing all {max_n}, {args.perms} draw orders), fitted on `{result['train']}` ({len(train)} MAWPS "
        f"single-op problems). Test: `{result['test']}`: {check.test_description}."),
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
            (f"**The targets cannot be measured on this set**: single-sample accuracy is {100 * single_accuracy:.1f}%, "
            "below the issue's 10% floor, so the accuracy ratio rests on a handful of problems (see its CI). The "
            "token share still says how the token budget calibrated on the first recording carries over."),
            "",
        ]
    lines += ["How the prompt file was cut from the shared data:", "", "```", check.prompts, "```", ""]
    OUT.mkdir(parents=True, exist_ok=True)
    stem = f"transfer_{args.check.replace('-', '_')}"
    (OUT / f"{stem}.md").write_text("\n".join(lines))
    (OUT / f"{stem}.json").write_text(json.dumps(result, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    apply_environment_defaults()
    main()
