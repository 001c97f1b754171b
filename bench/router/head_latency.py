"""The quality head's predict_proba, one prompt at a time: this tree vs another commit's head.py.

    python -m bench.router.head_latency --before c2e693c [--n 2000] [--rounds 5]

Loads every cached bench router head (`bench.router.onboarding`'s cache, LLMRouter seed 0: the
full router and the leave-one-out ones) with both implementations and times single-prompt
predictions on the same random feature rows, alternating before/after each round. Also times an
onboarded head (a leave-one-out head extended by `NewModelFit`, so it carries `stack_mix`).
Prints p50/p99 in microseconds and the after/before ratios.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import numpy as np

from bench.paths import REPO
from router.features.cache import default_cache_dir
from router.lab.onboard import NewModelFit
from router.predictors.head import QualityHead


def load_module_at(commit: str) -> ModuleType:
    source = subprocess.run(["git", "show", f"{commit}:router/predictors/head.py"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "head_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("head_before", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["head_before"] = module
    spec.loader.exec_module(module)
    return module


def timings(predict: object, rows: np.ndarray) -> np.ndarray:
    out = np.empty(len(rows))
    for i in range(len(rows)):
        t0 = time.perf_counter()
        predict(rows[i : i + 1])  # type: ignore[operator]
        out[i] = time.perf_counter() - t0
    return out * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    before = load_module_at(args.before)
    paths = sorted((default_cache_dir() / "bench" / "onboarding").glob("llmrouter-seed0-*-head.npz"))
    if not paths:
        raise SystemExit("no cached heads: run `python -m bench.router.onboarding --seeds 0` first")
    full = max(paths, key=lambda p: QualityHead.load(p).vectors.shape[0])
    head_after, head_before = QualityHead.load(full), before.QualityHead.load(full)
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(args.n, head_after.mean.shape[0])).astype(np.float32) * head_after.scale + head_after.mean
    assert np.allclose(head_after.predict_proba(rows[:50]), head_before.predict_proba(rows[:50]))
    loo = QualityHead.load(next(p for p in paths if QualityHead.load(p).vectors.shape[0] < head_after.vectors.shape[0]))
    onboarded = NewModelFit().fit(loo, rows[:100], (rng.random(100) < 0.5).astype(float)).extend(loo)
    results: dict[str, list[np.ndarray]] = {"before": [], "after": [], "onboarded (after)": []}
    for _ in range(args.rounds):
        results["before"].append(timings(head_before.predict_proba, rows))
        results["after"].append(timings(head_after.predict_proba, rows))
        results["onboarded (after)"].append(timings(onboarded.predict_proba, rows))
    print(f"head {full.name}: {head_after.vectors.shape[0]} models, kNN {head_after.calib_knn is not None}, "
          f"task prior {head_after.calib_task is not None}; {args.n} single-row predictions x {args.rounds} rounds")
    summary = {}
    for name, runs in results.items():
        p50 = float(np.median([np.percentile(r, 50) for r in runs]))
        p99 = float(np.median([np.percentile(r, 99) for r in runs]))
        summary[name] = (p50, p99)
        print(f"{name:20s} p50 {p50:7.1f} us  p99 {p99:7.1f} us  (median over rounds)")
    b, a = summary["before"], summary["after"]
    print(f"after/before: p50 {a[0] / b[0]:.3f}x, p99 {a[1] / b[1]:.3f}x")


if __name__ == "__main__":
    main()
