"""Would a perfect judge have got the flywheel's challengers promoted? Re-scores the last round's
cross-fitted gate of `bench.router.flywheel --gate-data crossfit` runs with the TRUE recorded
scores in place of the judge's, on the same prompts and fold routers (SIMULATION data).

    python -m bench.router.crossfit_truth --work /tmp/fwB --seeds 0 1 2 3 4 --run-suffix eps0.15-fb0-apgr-crossfit
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from contracts.outcomes import read_outcomes
from router.api import load_router
from router.lab.compare import compare_crossfit
from router.lab.flywheel import crossfit_folds, crossfit_rows
from router.lab.outcomes import prompt_key


def rescore(work: Path, seed: int, run_suffix: str, folds: int, rounds: int, n_boot: int) -> dict[str, object]:
    run = work / f"seed{seed}-{run_suffix}"
    reports = run / "serving.flywheel"
    last = sorted(p for p in reports.iterdir() if p.is_dir())[-1]
    champion = load_router(run / "serving")
    judged = crossfit_rows(read_outcomes(reports / "train_labels.jsonl"), champion.manifest.models,
                           set(champion.manifest.train_prompt_sha256))
    fold_routers = [(load_router(last / f"fold-{k}"), left_out)
                    for k, left_out in enumerate(crossfit_folds(judged, folds, seed))]
    challenger = load_router(last / "challenger")
    truth = {(prompt_key(r.prompt), r.model): r.score for r in read_outcomes(work / f"data-{seed}" / "train.jsonl")}
    true_rows = [r.model_copy(update={"score": truth[(prompt_key(r.prompt), r.model)]}) for r in judged]
    out: dict[str, object] = {"seed": seed, "round": last.name}
    for labels, rows in (("judged", judged), ("true", true_rows)):
        for metric in ("apgr", "aiq"):
            held, gate = compare_crossfit(champion, challenger, fold_routers, rows, n_boot=n_boot, seed=seed,
                                          gate_metric=metric, rounds=rounds)
            paired = held.apgr if metric == "apgr" else held.aiq
            assert paired is not None
            out[f"{labels}_{metric}"] = {"difference": paired.difference.estimate, "lower_bound": gate.lower_bound,
                                         "prompts": held.n_prompts}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--run-suffix", default="eps0.15-fb0-apgr-crossfit")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=6, help="the gate's alpha is 0.05 / rounds")
    parser.add_argument("--n-boot", type=int, default=2000)
    args = parser.parse_args()
    print("SIMULATION data: judged labels are the replay judge's; true labels are the recorded scores", flush=True)
    for seed in args.seeds:
        print(json.dumps(rescore(args.work, seed, args.run_suffix, args.folds, args.rounds, args.n_boot)), flush=True)


if __name__ == "__main__":
    main()
