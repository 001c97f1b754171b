"""Converters from public outcome sets to our JSONL format.

Usage: `run_import("routellm-gsm8k", data_dir, out_dir, test_fraction=0.5, seed=0)`
writes `out_dir/train.jsonl`, `out_dir/test.jsonl` and `out_dir/prices.json`.
Add a source by writing a `Converter` and registering it in `SOURCES`.
"""

from __future__ import annotations

import json
from pathlib import Path

from contracts.outcomes import write_outcomes
from contracts.prices import Price
from router.lab.importers import llmrouter, routellm, routerarena
from router.lab.importers.base import (
    Converter,
    ImportResult,
    deduplicate,
    keep_complete_prompts,
    split_by_prompt,
    subsample_prompts,
)
from router.lab.outcomes import prompt_key

SOURCES: dict[str, Converter] = {
    "routellm-gsm8k": routellm.convert_gsm8k,
    "routellm-mmlu": routellm.convert_mmlu,
    "llmrouter": llmrouter.convert,
    "routerarena": routerarena.convert,
}

COST_MODEL = (
    "cost_usd = prompt_tokens x input price + completion_tokens x output price (USD per 1M tokens). "
    "Recorded token counts are used where the source has them (RouterArena); otherwise prompt_tokens is "
    "litellm.token_counter on the prompt (tiktoken cl100k_base for every model) and completion_tokens is "
    "the same counter on the recorded response (RouteLLM GSM8K), or 256 when there is no response "
    "(RouteLLM MMLU, LLMRouter)."
)


def run_import(
    source: str,
    data_dir: Path,
    out_dir: Path,
    *,
    test_fraction: float = 0.5,
    seed: int = 0,
    max_prompts: int | None = None,
) -> ImportResult:
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of {sorted(SOURCES)}")
    rows, prices, dropped = SOURCES[source](data_dir)
    rows, merged = deduplicate(rows)
    dropped = {**dropped, "duplicate_rows_merged": merged}
    rows, incomplete = keep_complete_prompts(rows)
    dropped["incomplete_prompts"] = incomplete
    if max_prompts is not None:
        rows = subsample_prompts(rows, max_prompts, seed)
    train, test = split_by_prompt(rows, test_fraction, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_outcomes(out_dir / "train.jsonl", train)
    write_outcomes(out_dir / "test.jsonl", test)
    write_prices(out_dir / "prices.json", prices)
    return ImportResult(
        source=source,
        train_rows=len(train),
        test_rows=len(test),
        train_prompts=len({prompt_key(r.prompt) for r in train}),
        test_prompts=len({prompt_key(r.prompt) for r in test}),
        models=sorted({r.model for r in rows}),
        dropped=dropped,
        cost_model=COST_MODEL,
    )


def write_prices(path: Path, prices: dict[str, Price]) -> None:
    path.write_text(json.dumps({m: p.model_dump() for m, p in sorted(prices.items())}, indent=2) + "\n")


def read_prices(path: Path) -> dict[str, Price]:
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    return {m: Price.model_validate(p) for m, p in raw.items()}


__all__ = ["SOURCES", "COST_MODEL", "ImportResult", "read_prices", "run_import", "write_prices"]
