"""RouteLLM GSM8K and MMLU response tables (lm-sys/RouteLLM `routellm/evals`).

Each CSV row is one prompt with a True/False correctness column per model.
RouteLLM drops prompts it found in its own training data (matched on
`eval_prompt`); we drop the same ones so numbers are comparable.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from contracts.outcomes import OutcomeRow
from contracts.prices import Price
from router.lab.importers.base import fill_costs
from router.lab.outcomes import prompt_key

WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG = "gpt-4-1106-preview"
# List prices at the time the RouteLLM responses were generated (USD / 1M tokens):
# GPT-4 Turbo 10 in / 30 out; Mixtral-8x7B 0.6 / 0.6 (Together, Anyscale).
PRICES: dict[str, Price] = {
    STRONG: Price(input_per_1m=10.0, output_per_1m=30.0),
    WEAK: Price(input_per_1m=0.6, output_per_1m=0.6),
}

csv.field_size_limit(sys.maxsize)


def _contaminated(path: Path) -> set[str]:
    keys: set[str] = set()
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                keys.add(prompt_key(json.loads(line)["eval_prompt"]))
    return keys


def _as_score(value: str) -> float | None:
    text = value.strip().lower()
    if text in {"true", "1", "1.0"}:
        return 1.0
    if text in {"false", "0", "0.0"}:
        return 0.0
    return None  # missing answer: no outcome row rather than a guessed one


def _read_csv(path: Path, task: str, bad: set[str], dropped: dict[str, int]) -> list[OutcomeRow]:
    rows: list[OutcomeRow] = []
    with path.open(encoding="utf-8", newline="") as handle:
        for rec in csv.DictReader(handle):
            prompt = rec["prompt"]
            if prompt_key(prompt) in bad:
                dropped["contaminated"] = dropped.get("contaminated", 0) + 1
                continue
            for model in (WEAK, STRONG):
                score = _as_score(rec.get(model, ""))
                if score is None:
                    dropped["missing_score"] = dropped.get("missing_score", 0) + 1
                    continue
                text = rec.get(f"{model}_response") or None
                rows.append(OutcomeRow(prompt=prompt, model=model, score=score, task=task, response=text))
    return rows


def convert_gsm8k(data_dir: Path) -> tuple[list[OutcomeRow], dict[str, Price], dict[str, int]]:
    base = data_dir / "routellm"
    dropped: dict[str, int] = {}
    bad = _contaminated(base / "gsm8k_contaminated_prompts.jsonl")
    rows = _read_csv(base / "gsm8k_responses.csv", "gsm8k", bad, dropped)
    return fill_costs(rows, PRICES), dict(PRICES), dropped


def convert_mmlu(data_dir: Path) -> tuple[list[OutcomeRow], dict[str, Price], dict[str, int]]:
    base = data_dir / "routellm"
    dropped: dict[str, int] = {}
    bad = _contaminated(base / "mmlu_contaminated_prompts.jsonl")
    rows: list[OutcomeRow] = []
    for path in sorted((base / "mmlu").glob("*.csv")):
        subject = path.stem.removeprefix("mmlu_")
        rows.extend(_read_csv(path, f"mmlu/{subject}", bad, dropped))
    return fill_costs(rows, PRICES), dict(PRICES), dropped
