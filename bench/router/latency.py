"""Router decision latency: featurize + predict + policy, one prompt at a time.

    python -m bench.router.latency [--featurizers static minilm minilm-onnx minilm-int8] [--n 1000] [--threads 2]

Times 1,000 distinct held-out LLMRouter prompts (seed-0 split) with a cold
cache: the MiniLM featurizer runs with its embedding cache disabled, so every
prompt is embedded from scratch. It uses a seed-0 artifact from
bench/router/eval_all.py for each featurizer (training one if none exists).
Prints p50/p90/p99/mean in milliseconds per featurizer.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from contracts.environment import apply_environment_defaults
from bench.router.splits import ensure_split
from gateway.state import limit_blas_threads
from router import Candidate, load_router
from router.features.cache import default_cache_dir
from router.features.sentence import set_torch_threads
from router.lab.importers import read_prices
from router.lab.outcomes import read_outcomes
from router.lab.train import TrainConfig, train_router
from router.tokens import count_tokens


def artifact_for(featurizer: str, work: Path) -> Path:
    """A seed-0 bench artifact with this featurizer (any dataset: timing does not depend on it)."""
    for source in ("llmrouter", "routellm-mmlu", "routellm-gsm8k", "routerarena"):
        for label in (featurizer, f"{featurizer}+bag"):  # +bag: trained with the token-bag default
            art = work / "artifacts" / f"{source}-{label}-seed0"
            if (art / "manifest.json").exists():
                return art
    split = held_out_split(work)
    art = work / "artifacts" / f"llmrouter-{featurizer}-seed0"
    train_router(read_outcomes(split / "train.jsonl"), art, read_prices(split / "prices.json"),
                 TrainConfig(featurizer=featurizer, cv_folds=3))
    return art


def held_out_split(work: Path) -> Path:
    return ensure_split("llmrouter", 0, work)  # the bench's seed-0 LLMRouter split (30% held out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--featurizers", nargs="+", default=["static", "minilm"])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ["TTC_ROUTER_THREADS"] = str(args.threads)
    set_torch_threads(args.threads)
    work = default_cache_dir() / "bench"
    for featurizer in args.featurizers:
        art = artifact_for(featurizer, work)
        router = load_router(art)  # serving mode: no embedding cache, so every prompt is cold
        prompts = sorted({r.prompt for r in read_outcomes(held_out_split(work) / "test.jsonl")})
        prompts = [prompts[i] for i in np.random.default_rng(0).permutation(len(prompts))[: args.n]]
        prices = router.manifest.prices
        cands = {p: [Candidate(name=m, input_per_1m=prices[m].input_per_1m, output_per_1m=prices[m].output_per_1m,
                               prompt_tokens=count_tokens(p)) for m in router.models] for p in prompts}
        router.route("warm-up prompt", cands[prompts[0]])  # load models outside the timing
        limit_blas_threads(args.threads)  # as the gateway does once its router is loaded
        wall, cpu = [], []
        for p in prompts:
            t0, c0 = time.perf_counter(), time.process_time()
            router.route(p, cands[p])
            wall.append((time.perf_counter() - t0) * 1000.0)
            cpu.append((time.process_time() - c0) * 1000.0)
        w, c = np.array(wall), np.array(cpu)
        # CPU time is reported too: on a shared machine, wall-clock tails mostly
        # measure other processes holding the cores.
        print(f"{featurizer:>12}: n={len(w)} wall p50={np.percentile(w, 50):.2f} ms  p90={np.percentile(w, 90):.2f} ms  "
              f"p99={np.percentile(w, 99):.2f} ms  mean={w.mean():.2f} ms | cpu p50={np.percentile(c, 50):.2f} ms  "
              f"p99={np.percentile(c, 99):.2f} ms  (threads={args.threads}, "
              f"{len(router.models)} candidates, quality model {router.manifest.quality['kind']}, "
              f"kNN stack {'on' if router.quality.knn_k else 'off'}, artifact {art.name})", flush=True)


if __name__ == "__main__":
    apply_environment_defaults()
    main()
