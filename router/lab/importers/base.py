"""Shared import machinery: dedup, prompt-disjoint split, cost filling.

Every converter returns raw `OutcomeRow`s; this module turns them into a
train/test pair that never shares a prompt.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel

from contracts.outcomes import OutcomeRow
from contracts.prices import Price
from router.lab.outcomes import prompt_key
from router.tokens import DEFAULT_COMPLETION_TOKENS, count_tokens


class ImportResult(BaseModel):
    """What an importer produced, for the CLI and the report."""

    source: str
    train_rows: int
    test_rows: int
    train_prompts: int
    test_prompts: int
    models: list[str]
    dropped: dict[str, int]
    cost_model: str


Converter = Callable[[Path], tuple[list[OutcomeRow], dict[str, Price], dict[str, int]]]


def fill_costs(
    rows: Sequence[OutcomeRow],
    prices: dict[str, Price],
) -> list[OutcomeRow]:
    """Fill missing token counts and cost.

    prompt_tokens: litellm's counter on the prompt. completion_tokens: the
    counter on the recorded response when there is one, else 256 (the issue's
    stated cost model for sources without responses).
    """
    out: list[OutcomeRow] = []
    for row in rows:
        p_tok = row.prompt_tokens if row.prompt_tokens is not None else count_tokens(row.prompt)
        c_tok = row.completion_tokens
        if c_tok is None:
            c_tok = count_tokens(row.response) if row.response else DEFAULT_COMPLETION_TOKENS
        cost = row.cost_usd
        if cost is None and row.model in prices:
            cost = prices[row.model].cost_usd(p_tok, c_tok)
        out.append(row.model_copy(update={"prompt_tokens": p_tok, "completion_tokens": c_tok, "cost_usd": cost}))
    return out


def deduplicate(rows: Sequence[OutcomeRow]) -> tuple[list[OutcomeRow], int]:
    """One row per (prompt, model): repeated prompts get their mean score.

    Public sets repeat prompts (MMLU 105 times, LLMRouter many); keeping both
    copies would let one prompt land on both sides of the split.
    Returns the rows and how many duplicates were merged.
    """
    groups: dict[tuple[str, str], list[OutcomeRow]] = defaultdict(list)
    order: list[tuple[str, str]] = []
    for row in rows:
        key = (prompt_key(row.prompt), row.model)
        if key not in groups:
            order.append(key)
        groups[key].append(row)
    merged: list[OutcomeRow] = []
    for key in order:
        group = groups[key]
        first = group[0]
        if len(group) == 1:
            merged.append(first)
            continue
        mean = lambda vals: sum(vals) / len(vals)  # noqa: E731 - tiny local helper
        update: dict[str, object] = {"score": mean([r.score for r in group])}
        for field in ("prompt_tokens", "completion_tokens"):
            vals = [getattr(r, field) for r in group if getattr(r, field) is not None]
            update[field] = round(mean(vals)) if vals else None
        costs = [r.cost_usd for r in group if r.cost_usd is not None]
        update["cost_usd"] = mean(costs) if costs else None
        merged.append(first.model_copy(update=update))
    return merged, len(rows) - len(merged)


def split_by_prompt(
    rows: Sequence[OutcomeRow], test_fraction: float, seed: int
) -> tuple[list[OutcomeRow], list[OutcomeRow]]:
    """Seeded split on unique prompts, so no prompt is on both sides."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError("test_fraction must be strictly between 0 and 1")
    keys = sorted({prompt_key(r.prompt) for r in rows})
    random.Random(seed).shuffle(keys)
    n_test = max(1, round(len(keys) * test_fraction))
    test_keys = set(keys[:n_test])
    train = [r for r in rows if prompt_key(r.prompt) not in test_keys]
    test = [r for r in rows if prompt_key(r.prompt) in test_keys]
    return train, test


def keep_complete_prompts(rows: Sequence[OutcomeRow]) -> tuple[list[OutcomeRow], int]:
    """Drop prompts that lack an outcome for some model.

    Routing evaluation compares models on the same prompts; a prompt that one
    model never answered cannot be scored for a router that picks it.
    """
    models = {r.model for r in rows}
    by_prompt: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        by_prompt[prompt_key(r.prompt)].add(r.model)
    complete = {k for k, ms in by_prompt.items() if ms == models}
    kept = [r for r in rows if prompt_key(r.prompt) in complete]
    return kept, len(by_prompt) - len(complete)


def subsample_prompts(rows: Sequence[OutcomeRow], max_prompts: int, seed: int) -> list[OutcomeRow]:
    """Seeded subset of at most `max_prompts` prompts (all their rows)."""
    keys = sorted({prompt_key(r.prompt) for r in rows})
    if len(keys) <= max_prompts:
        return list(rows)
    random.Random(seed + 7919).shuffle(keys)
    chosen = set(keys[:max_prompts])
    return [r for r in rows if prompt_key(r.prompt) in chosen]
