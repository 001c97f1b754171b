"""Replay evaluation: run strategies over a replay file for seeds 0..K-1.

Each (problem, seed) runs the real strategy code through `run_strategy` with a
fresh :class:`ReplayGenerator` (seeded draw order) and an unlimited in-memory
budget. Accuracy is graded by the harness (`ReplayGenerator.is_correct`), never
by the strategy. Tokens and calls are per-problem means; one sample is one call.

Learned stopping policies are evaluated by cross-fitting: problems are split
into folds and each fold is run with a policy fitted on the other folds only.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..runner import run_strategy
from ..spec import TTCSpec
from ..stopping import StoppingPolicy
from ..votes import answer_key
from .budget import InMemoryBudget
from .fit_policy import fit_policy, select_policy
from .replay import ReplayGenerator, ReplayProblem
from .simulate import Problem

PolicyFor = Callable[[ReplayProblem], StoppingPolicy | None]


@dataclass
class EvalResult:
    strategy: str
    seeds: int
    # correct[p][s], tokens[p][s], calls[p][s]: problem p, seed s
    correct: list[list[float]] = field(default_factory=list)
    tokens: list[list[float]] = field(default_factory=list)
    calls: list[list[float]] = field(default_factory=list)
    label: str = ""

    @property
    def accuracy(self) -> float:
        return _mean2(self.correct)

    @property
    def mean_completion_tokens(self) -> float:
        return _mean2(self.tokens)

    @property
    def mean_calls(self) -> float:
        return _mean2(self.calls)

    def summary(self) -> dict[str, float | int | str]:
        """The `--json` output; scripts outside the project rely on these keys."""
        return {
            "strategy": self.strategy,
            "accuracy": self.accuracy,
            "mean_completion_tokens": self.mean_completion_tokens,
            "mean_calls": self.mean_calls,
            "seeds": self.seeds,
        }


def _mean2(rows: list[list[float]]) -> float:
    flat = [x for r in rows for x in r]
    return sum(flat) / len(flat) if flat else 0.0


async def _run_one(
    problem: ReplayProblem, seed: int, spec: TTCSpec, policy: StoppingPolicy | None
) -> tuple[float, float, float]:
    gen = ReplayGenerator([problem], seed=seed)
    result = await run_strategy(
        [{"role": "user", "content": problem.prompt}], spec, generator=gen, budget=InMemoryBudget(),
        policy=policy, verifier=gen.verifier() if spec.selector == "verifier" else None,
    )
    return (
        float(gen.is_correct(result.chosen)),
        float(result.usage.completion_tokens),
        float(len(result.calls)),
    )


async def evaluate_async(
    problems: Sequence[ReplayProblem], spec: TTCSpec, seeds: int, *, policy_for: PolicyFor | None = None,
    label: str = "",
) -> EvalResult:
    res = EvalResult(spec.strategy, seeds, label=label or spec.strategy)
    for p in problems:
        policy = policy_for(p) if policy_for else None
        rows = [await _run_one(p, s, spec, policy) for s in range(seeds)]
        res.correct.append([r[0] for r in rows])
        res.tokens.append([r[1] for r in rows])
        res.calls.append([r[2] for r in rows])
    return res


def evaluate(
    problems: Sequence[ReplayProblem], spec: TTCSpec, seeds: int, *, policy_for: PolicyFor | None = None,
    label: str = "",
) -> EvalResult:
    return asyncio.run(evaluate_async(problems, spec, seeds, policy_for=policy_for, label=label))


# ---------------------------------------------------------------- policies



def majority_curve(problems: Sequence[ReplayProblem], max_n: int, seeds: int) -> dict[str, EvalResult]:
    """`single` and `majority@k` for k = 2..max_n: the accuracy-vs-tokens curve of plain voting."""
    curve: dict[str, EvalResult] = {}
    for k in range(1, max_n + 1):
        label = "single" if k == 1 else f"majority@{k}"
        curve[label] = evaluate(problems, TTCSpec(strategy="best_of_n", n=k), seeds, label=label)
    return curve

def to_policy_problem(p: ReplayProblem, extractor: str = "auto", difficulty: float | None = None) -> Problem:
    """What the policy fitter sees. Answers are keyed exactly as at run time."""
    from ..base import Completion

    keys = [
        answer_key(Completion(text=s.text or "", model="", prompt_tokens=0, completion_tokens=0, cost_usd=0.0,
                              answer=s.answer), extractor)
        for s in p.samples
    ]
    return Problem(
        answers=keys,
        scores=[s.score for s in p.samples],
        correct=[bool(p.sample_correct(j)) for j in range(len(p.samples))],
        completion_tokens=[s.completion_tokens for s in p.samples],
        difficulty=difficulty,
        prompt=p.prompt,
        texts=[s.text or "" for s in p.samples] if any(s.text for s in p.samples) else None,
    )


def folds_of(problems: Sequence[ReplayProblem], k: int, seed: int = 0) -> list[list[int]]:
    idx = list(range(len(problems)))
    random.Random(seed).shuffle(idx)
    return [sorted(idx[f::k]) for f in range(k)]


def cross_fit(
    problems: Sequence[ReplayProblem], *, folds: int = 5, seed: int = 0, difficulty: bool = False,
    **fit_kwargs: object,
) -> tuple[PolicyFor, list[StoppingPolicy]]:
    """Policies fitted out-of-fold: problem i is served by the policy that
    never saw it. Returns the lookup and the per-fold policies. With
    `candidates=[{objective, state, difficulty_bins}, ...]` (and
    `rel_tolerance`) each fold also picks the policy family by inner CV on its
    training problems (:func:`strategies.lab.fit_policy.select_policy`).

    With `difficulty=True` each fold also fits the prompt-only difficulty
    model (:mod:`strategies.lab.difficulty`) on its training problems; held-out
    problems are served with their predicted difficulty, as the gateway serves
    a prompt with the router's."""
    from .difficulty import fit_difficulty

    by_id: dict[str, StoppingPolicy] = {}
    policies: list[StoppingPolicy] = []
    for f, test_idx in enumerate(folds_of(problems, folds, seed)):
        held = set(test_idx)
        train_raw = [problems[i] for i in range(len(problems)) if i not in held]
        predict = None
        if difficulty:
            model = fit_difficulty([p.prompt for p in train_raw],
                                   [sum(bool(p.sample_correct(j)) for j in range(len(p.samples))) / len(p.samples)
                                    for p in train_raw])
            predict = model.predict
        train = [to_policy_problem(p, difficulty=predict(p.prompt) if predict else None) for p in train_raw]
        if fit_kwargs.get("candidates"):
            pol = select_policy(train, seed=seed + f, **fit_kwargs)  # type: ignore[arg-type]
        else:
            pol = fit_policy(train, seed=seed + f, **{k: v for k, v in fit_kwargs.items() if k != "candidates"})  # type: ignore[arg-type]
        policies.append(pol)
        for i in test_idx:
            served = pol
            if predict is not None:
                served = pol.with_difficulty(predict(problems[i].prompt))
            by_id[problems[i].id] = served
    return (lambda p: by_id[p.id]), policies


def cross_fit_value(
    problems: Sequence[ReplayProblem], *, folds: int = 5, seed: int = 0, **fit_kwargs: Any,
) -> tuple[PolicyFor, list[StoppingPolicy]]:
    """:class:`~strategies.value_policy.ValuePolicy` fitted out-of-fold: problem i
    is served by the policy fitted on the other folds (its vote weights, prompt
    difficulty model and token-budget calibration included)."""
    from .fit_value_policy import fit_value_policy

    by_id: dict[str, StoppingPolicy] = {}
    policies: list[StoppingPolicy] = []
    for f, test_idx in enumerate(folds_of(problems, folds, seed)):
        held = set(test_idx)
        train = [to_policy_problem(problems[i]) for i in range(len(problems)) if i not in held]
        pol = fit_value_policy(train, seed=seed * 100 + f, **fit_kwargs)
        policies.append(pol)
        for i in test_idx:
            by_id[problems[i].id] = pol
    return (lambda p: by_id[p.id]), policies


# --------------------------------------------------------------- statistics


def bootstrap_ci(
    values: Sequence[float], *, reps: int = 2000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float, float]:
    """Mean and percentile CI, resampling problems (the unit of variation)."""
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(reps))
    lo, hi = means[int(reps * alpha / 2)], means[int(reps * (1 - alpha / 2)) - 1]
    return sum(values) / n, lo, hi


def bootstrap_ratio_ci(
    num: Sequence[float], den: Sequence[float], *, reps: int = 2000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float, float]:
    """Ratio of means (e.g. adaptive tokens / maj@8 tokens), paired by problem."""
    rng = random.Random(seed)
    n = len(num)
    ratios = []
    for _ in range(reps):
        idx = [rng.randrange(n) for _ in range(n)]
        ratios.append(sum(num[i] for i in idx) / max(sum(den[i] for i in idx), 1e-12))
    ratios.sort()
    return sum(num) / sum(den), ratios[int(reps * alpha / 2)], ratios[int(reps * (1 - alpha / 2)) - 1]


def per_problem(rows: list[list[float]]) -> list[float]:
    return [sum(r) / len(r) for r in rows]
