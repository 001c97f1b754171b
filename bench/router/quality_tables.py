"""Tables for bench/results/router/QUALITY.md from the per-seed runs of bench/router/eval_all.py.

    python -m bench.router.quality_tables

Prints (1) every router variant per dataset, mean ± std over its seeds, with the
AIQ margin over the best of kNN / logistic / MLP *per seed* and the number of
seeds it beats that baseline, and (2) the baselines of those same runs.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from contracts.environment import apply_environment_defaults
from router.features.cache import default_cache_dir

SOURCES = ("routellm-gsm8k", "routellm-mmlu", "llmrouter", "routerarena")
BASELINES = ("knn", "logistic", "mlp")


def _ms(values: list[float | None]) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "n/a"
    missing = len(values) - len(vals)
    return f"{np.mean(vals):.3f} ± {np.std(vals):.3f}" + (f" ({missing} n/a)" if missing else "")


def load_runs(work: Path) -> dict[tuple[str, str, str], dict[int, dict]]:  # type: ignore[type-arg]
    runs: dict[tuple[str, str, str], dict[int, dict]] = defaultdict(dict)  # type: ignore[type-arg]
    for path in sorted((work / "runs").glob("*.json")):
        body, seed = path.stem.rsplit("-seed", 1)
        source = next(s for s in SOURCES if body.startswith(s + "-"))
        variant, embedder = body[len(source) + 1 :].rsplit("-", 1)
        runs[(source, variant, embedder)][int(seed)] = json.loads(path.read_text())
    return runs


def main() -> None:
    runs = load_runs(default_cache_dir() / "bench")
    print("| dataset | router | seeds | AIQ | APGR | CPT(50%) | match best | best baseline AIQ | AIQ margin | seeds above |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    order = {s: i for i, s in enumerate(SOURCES)}
    for (source, variant, _emb), by_seed in sorted(runs.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        seeds = sorted(by_seed)
        router = [by_seed[s]["router"] for s in seeds]
        best = [max(by_seed[s][b]["aiq"] for b in BASELINES) for s in seeds]
        margin = [r["aiq"] - b for r, b in zip(router, best, strict=True)]
        print(f"| {source} | `{variant}` | {len(seeds)} | {_ms([r['aiq'] for r in router])} | "
              f"{_ms([r['apgr'] for r in router])} | {_ms([r['cpt50'] for r in router])} | "
              f"{_ms([r['match_best_cost_fraction'] for r in router])} | {_ms(best)} | "
              f"{np.mean(margin):+.4f} ± {np.std(margin):.4f} | {sum(m > 0 for m in margin)}/{len(margin)} |")
    print("\n| dataset | method | seeds | AIQ | APGR | CPT(50%) | match best |")
    print("|---|---|---|---|---|---|---|")
    shown: set[str] = set()
    for (source, _variant, _emb), by_seed in sorted(runs.items(), key=lambda kv: order[kv[0][0]]):
        if source in shown or len(by_seed) < 5:
            continue
        shown.add(source)
        seeds = sorted(by_seed)
        for method in (*BASELINES, "random", "oracle"):
            rows = [by_seed[s][method] for s in seeds]
            print(f"| {source} | {method} | {len(seeds)} | {_ms([r['aiq'] for r in rows])} | {_ms([r['apgr'] for r in rows])} | "
                  f"{_ms([r['cpt50'] for r in rows])} | {_ms([r['match_best_cost_fraction'] for r in rows])} |")


if __name__ == "__main__":
    apply_environment_defaults()
    main()
