"""Outcome rows -> dense (prompt x model) matrices for training and evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from contracts.outcomes import OutcomeRow
from contracts.prices import TOKENS_PER_PRICE_UNIT, Price
from router.lab.outcomes import prompt_key
from router.tokens import DEFAULT_COMPLETION_TOKENS


@dataclass
class OutcomeMatrix:
    prompts: list[str]
    models: list[str]
    score: np.ndarray  # (n, m) float, 0 where missing
    mask: np.ndarray  # (n, m) bool, outcome observed
    prompt_tokens: np.ndarray  # (n,) int
    completion_tokens: np.ndarray  # (n, m) float
    cost: np.ndarray  # (n, m) USD, NaN where unknown
    tasks: list[str | None]

    @property
    def complete(self) -> bool:
        return bool(self.mask.all())


def build_matrix(
    rows: Sequence[OutcomeRow], models: Sequence[str] | None = None, prices: dict[str, Price] | None = None
) -> OutcomeMatrix:
    """Rows for unknown models (when `models` is given) are ignored.

    Missing costs are filled from `prices` (prompt tokens x input price +
    completion tokens x output price), so every source yields a cost matrix.
    """
    model_list = list(models) if models is not None else sorted({r.model for r in rows})
    col = {m: j for j, m in enumerate(model_list)}
    index: dict[str, int] = {}
    prompts: list[str] = []
    tasks: list[str | None] = []
    for r in rows:
        if r.model in col and (k := prompt_key(r.prompt)) not in index:
            index[k] = len(prompts)
            prompts.append(r.prompt)
            tasks.append(r.task)
    n, m = len(prompts), len(model_list)
    score = np.zeros((n, m))
    mask = np.zeros((n, m), dtype=bool)
    p_tok = np.zeros(n)
    c_tok = np.full((n, m), float(DEFAULT_COMPLETION_TOKENS))
    cost = np.full((n, m), np.nan)
    for r in rows:
        j = col.get(r.model)
        if j is None:
            continue
        i = index[prompt_key(r.prompt)]
        score[i, j] = r.score
        mask[i, j] = True
        if r.prompt_tokens is not None:
            p_tok[i] = r.prompt_tokens
        if r.completion_tokens is not None:
            c_tok[i, j] = r.completion_tokens
        if r.cost_usd is not None:
            cost[i, j] = r.cost_usd
    if prices:
        for j, name in enumerate(model_list):
            if name in prices:
                fill = np.isnan(cost[:, j])
                cost[fill, j] = prices[name].cost_usd(p_tok[fill], c_tok[fill, j])
    return OutcomeMatrix(prompts, model_list, score, mask, p_tok, c_tok, cost, tasks)


def infer_prices(matrix: OutcomeMatrix) -> dict[str, Price]:
    """Per-token prices from rows that carry cost and token counts (non-negative least squares).

    Used only when no price map is given. When completion lengths are all
    equal the split between input and output price is not identifiable; the
    fit then puts the whole price on input and output alike.
    """
    from scipy.optimize import nnls

    prices: dict[str, Price] = {}
    for j, name in enumerate(matrix.models):
        ok = matrix.mask[:, j] & ~np.isnan(matrix.cost[:, j])
        if ok.sum() < 2:
            continue
        # cost = a @ (input_per_1m, output_per_1m): Price.cost_usd's formula, solved for the prices.
        a = np.column_stack([matrix.prompt_tokens[ok], matrix.completion_tokens[ok, j]]) / TOKENS_PER_PRICE_UNIT
        b = matrix.cost[ok, j]
        if np.linalg.matrix_rank(a) < 2:
            per_token = float(b.sum() / max(a.sum(), 1e-12))
            prices[name] = Price(input_per_1m=per_token, output_per_1m=per_token)
            continue
        (pin, pout), _ = nnls(a, b)
        prices[name] = Price(input_per_1m=float(pin), output_per_1m=float(pout))
    return prices
