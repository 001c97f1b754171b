"""Small outcome sets with a strong routing signal, and routers trained on them (static featurizer)."""

from __future__ import annotations

import random
from pathlib import Path

from contracts.outcomes import OutcomeRow
from contracts.prices import Price
from router.lab.sources import keep_rows
from router.lab.train import TrainConfig, train_router

EASY = ("add {a} and {b}", "what is {a} plus {b}", "sum of {a} and {b}")
HARD = ("prove that the sequence {a} converges to {b} under the stated lemma",
        "derive the closed form of the integral from {a} to {b} of the gamma density")
MODELS = ("cheap", "dear")
PRICES = {"cheap": Price(input_per_1m=0.1, output_per_1m=0.16), "dear": Price(input_per_1m=10.0, output_per_1m=16.0)}


def two_kind_rows(n: int, seed: int, *, inverted: bool = False) -> list[OutcomeRow]:
    """`cheap` solves the easy prompts only, `dear` everything; `inverted` swaps cheap's labels
    (a router trained on them routes exactly wrong)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        hard = rng.random() < 0.5
        text = rng.choice(HARD if hard else EASY).format(a=rng.randint(1, 10**6), b=rng.randint(1, 10**6))
        cheap_right = (not hard) != inverted
        out.append(OutcomeRow(prompt=text, model="cheap", score=float(cheap_right), prompt_tokens=20,
                              completion_tokens=50, cost_usd=1e-5))
        out.append(OutcomeRow(prompt=text, model="dear", score=1.0, prompt_tokens=20, completion_tokens=50,
                              cost_usd=1e-3))
    return out


def train_small(rows: list[OutcomeRow], out: Path) -> Path:
    train_router(rows, out, PRICES, TrainConfig(featurizer="static", cv_folds=2, token_bag="off", task_prior=False))
    keep_rows(out, rows)
    return out
