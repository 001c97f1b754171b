"""How strong is the promotion gate? The gold-ceiling router against the 100-gold seed router,
compared on *true-label* held-out subsets of RouteLLM GSM8K (no judge noise), with each gate metric.

If the gate cannot certify that improvement, a flywheel gated the same way cannot promote a
judge-trained router either, however good its labels. Same routers and splits as
`bench.router.flywheel` (static featurizer; seed: 100 random train prompts; ceiling: all train).

    python -m bench.router.gate_power --seeds 0 1 2 --sizes 150 300 654
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.paths import DATA as SHARED_DATA
from bench.router.flywheel import OUT, train
from contracts.outcomes import read_outcomes
from router.api import load_router
from router.lab.compare import compare_heldout
from router.lab.importers import read_prices, run_import
from router.lab.outcomes import prompt_key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[150, 300, 654])
    parser.add_argument("--rounds", type=int, default=6, help="the gate's alpha is 0.05 / rounds")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/ttc-flywheel"))
    args = parser.parse_args()
    rows_out = []
    for seed in args.seeds:
        data = args.work / f"data-{seed}"
        if not (data / "train.jsonl").exists():
            run_import("routellm-gsm8k", SHARED_DATA, data, seed=seed)
        train_rows, test_rows = read_outcomes(data / "train.jsonl"), read_outcomes(data / "test.jsonl")
        prices = read_prices(data / "prices.json")
        prompts = sorted({r.prompt for r in train_rows}, key=prompt_key)
        chosen = set(np.random.default_rng(seed).choice(prompts, 100, replace=False))  # the flywheel bench's draw
        seed_dir, ceiling_dir = args.work / f"gate-power-seed-{seed}", args.work / f"ceiling-{seed}"
        if not (seed_dir / "manifest.json").exists():
            train([r for r in train_rows if r.prompt in chosen], seed_dir, prices, seed)
        if not (ceiling_dir / "manifest.json").exists():
            train(train_rows, ceiling_dir, prices, seed)
        champion, challenger = load_router(seed_dir), load_router(ceiling_dir)
        test_prompts = sorted({r.prompt for r in test_rows})
        for size in args.sizes:
            keep = set(random.Random(seed).sample(test_prompts, min(size, len(test_prompts))))
            subset = [r for r in test_rows if r.prompt in keep]
            for metric in ("aiq", "apgr"):
                held, gate = compare_heldout(champion, challenger, subset, n_boot=args.n_boot, seed=seed,
                                             gate_metric=metric, rounds=args.rounds)
                row = {"seed": seed, "prompts": len(keep), "metric": metric, "passed": gate.passed,
                       "lower_bound": gate.lower_bound, "aiq_difference": held.aiq.difference.model_dump(),
                       "apgr_difference": held.apgr.difference.model_dump() if held.apgr else None}
                rows_out.append(row)
                print(json.dumps(row), flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "FLYWHEEL-gate-power.json").write_text(json.dumps(
        {"date": datetime.now(UTC).isoformat(), "args": vars(args) | {"work": str(args.work)}, "rows": rows_out},
        indent=2) + "\n")


if __name__ == "__main__":
    main()
