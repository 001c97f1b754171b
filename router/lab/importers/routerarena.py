"""RouterArena cached results (RouteWorks/RouterArena `cached_results/`).

One JSONL per model with real token usage; prices from `cost.json`. Scores are
taken from `evaluation_result.score` and clipped to [0, 1] (a few metrics go
slightly negative). The task is the dataset prefix of `global_index`.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from contracts.outcomes import OutcomeRow
from contracts.prices import Price
from router.lab.importers.base import fill_costs


def _evaluation(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = ast.literal_eval(value)  # some dumps store a Python repr
        except (ValueError, SyntaxError):
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def convert(data_dir: Path) -> tuple[list[OutcomeRow], dict[str, Price], dict[str, int]]:
    base = data_dir / "routerarena"
    price_table = json.loads((base / "cost.json").read_text(encoding="utf-8"))
    prices: dict[str, Price] = {}
    dropped: dict[str, int] = {}
    rows: list[OutcomeRow] = []
    for path in sorted(base.glob("*.jsonl")):
        model = path.stem
        if model not in price_table:
            dropped["no_price"] = dropped.get("no_price", 0) + 1
            continue
        entry = price_table[model]
        price = Price(
            input_per_1m=float(entry["input_token_price_per_million"]),
            output_per_1m=float(entry["output_token_price_per_million"]),
        )
        prices[model] = price
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                rec = json.loads(line)
                score = _evaluation(rec.get("evaluation_result")).get("score")
                if score is None or not rec.get("question"):
                    dropped["missing_score"] = dropped.get("missing_score", 0) + 1
                    continue
                usage = rec.get("token_usage") or {}
                p_tok = usage.get("input_tokens")
                c_tok = usage.get("output_tokens")
                rows.append(
                    OutcomeRow(
                        prompt=rec["question"],
                        model=model,
                        score=min(1.0, max(0.0, float(score))),
                        task=str(rec.get("global_index", "")).rsplit("_", 1)[0] or None,
                        prompt_tokens=int(p_tok) if p_tok is not None else None,
                        completion_tokens=int(c_tok) if c_tok is not None else None,
                        cost_usd=price.cost_usd(int(p_tok), int(c_tok)) if p_tok is not None and c_tok is not None else None,
                        id=str(rec.get("global_index")) if rec.get("global_index") else None,
                        response=rec.get("generated_answer") or None,
                    )
                )
    return fill_costs(rows, prices), prices, dropped
