"""LLMRouter (ulab-uiuc/LLMRouter) scores, joined with queries and prices.

`scores_train.json` holds {question, scores{model: 0..1}}; the task name comes
from `queries_train.jsonl` (joined on the exact query text) and prices from
`models.json` (`input_price`/`output_price`, USD per 1M tokens).
"""

from __future__ import annotations

import json
from pathlib import Path

from contracts.outcomes import OutcomeRow
from contracts.prices import Price
from router.lab.importers.base import fill_costs


def convert(data_dir: Path) -> tuple[list[OutcomeRow], dict[str, Price], dict[str, int]]:
    base = data_dir / "llmrouter"
    meta = json.loads((base / "models.json").read_text(encoding="utf-8"))
    prices = {
        name: Price(input_per_1m=float(m["input_price"]), output_per_1m=float(m["output_price"]))
        for name, m in meta.items()
    }
    tasks: dict[str, str] = {}
    with (base / "queries_train.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                q = json.loads(line)
                tasks.setdefault(q["query"], q["task_name"])  # first task wins on repeats
    dropped: dict[str, int] = {}
    rows: list[OutcomeRow] = []
    for rec in json.loads((base / "scores_train.json").read_text(encoding="utf-8")):
        question = rec["question"]
        if not question.strip():
            dropped["empty_prompt"] = dropped.get("empty_prompt", 0) + 1
            continue
        if question not in tasks:
            dropped["no_query_join"] = dropped.get("no_query_join", 0) + 1
        for model, score in rec["scores"].items():
            if model not in prices:
                dropped["no_price"] = dropped.get("no_price", 0) + 1
                continue
            if score is None:
                dropped["missing_score"] = dropped.get("missing_score", 0) + 1
                continue
            rows.append(
                OutcomeRow(
                    prompt=question,
                    model=model,
                    score=min(1.0, max(0.0, float(score))),
                    task=tasks.get(question),
                )
            )
    used = {r.model for r in rows}
    return fill_costs(rows, prices), {m: p for m, p in prices.items() if m in used}, dropped
