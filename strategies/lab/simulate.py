"""Replay adaptive's stopping rule over recorded problems, fast and without I/O.

A :class:`Problem` is one recorded problem as the fitters and this simulator
see it (answers keyed as at run time, correctness labels, token counts). The
simulator draws the samples in random orders and stops where the policy says,
exactly as `adaptive` would (per-prompt hooks and vote weights included); the
real strategy code over a :class:`~strategies.lab.replay.ReplayGenerator` is
:mod:`strategies.lab.evaluation`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from ..stopping import StoppingPolicy
from ..votes import Tally, tally


@dataclass(frozen=True)
class Problem:
    """One recorded problem, as the fitter and simulator see it."""

    answers: list[str | None]
    scores: list[float | None]
    correct: list[bool]
    completion_tokens: list[int]
    # Predicted P(one sample is correct) for the prompt (the router's difficulty
    # estimate, or any prompt-only model); None when there is none.
    difficulty: float | None = None
    # The prompt text (the user turn), for policies with prompt features.
    prompt: str = ""
    # The samples' texts, for vote weights that read the worked arithmetic; None: not recorded.
    texts: list[str] | None = None


def answer_correct(p: Problem, answer: str | None) -> bool:
    if answer is None:
        return False
    return any(c for a, c in zip(p.answers, p.correct) if a == answer)


def draw_orders(n_problems: int, n_samples: list[int], perms: int, seed: int) -> list[list[list[int]]]:
    """`perms` random draw orders per problem, seeded."""
    rng = random.Random(seed)
    out = []
    for i in range(n_problems):
        idx = list(range(n_samples[i]))
        per = []
        for _ in range(perms):
            rng.shuffle(idx)
            per.append(list(idx))
        out.append(per)
    return out


@dataclass(frozen=True)
class SimResult:
    accuracy: float
    mean_completion_tokens: float
    mean_calls: float


def for_problem(policy: StoppingPolicy, p: Problem) -> StoppingPolicy:
    """The policy as adaptive runs it on this prompt (its predicted difficulty, if any, and the prompt itself)."""
    if p.difficulty is not None:
        policy = policy.with_difficulty(p.difficulty)
    return policy.for_prompt(p.prompt)


def simulate_per_problem(
    policy: StoppingPolicy, problems: Sequence[Problem], *, perms: int = 20, seed: int = 0
) -> list[SimResult]:
    """Per problem, the mean over `perms` random draw orders (for bootstrap CIs)."""
    out = []
    orders = draw_orders(len(problems), [len(p.answers) for p in problems], perms, seed)
    for p, per in zip(problems, orders):
        pol = for_problem(policy, p)
        max_n = min(pol.max_n, len(p.answers))
        sched = [k for k in pol.schedule if k < max_n] + [max_n]
        # Per-sample vote weights, as adaptive computes them (None: one sample, one vote).
        weights = pol.vote_weights(p.answers, p.completion_tokens, p.prompt, p.texts)
        acc = tok = calls = 0.0
        for order in per:
            for k in sched:
                t = tally([p.answers[j] for j in order[:k]], [p.scores[j] for j in order[:k]],
                          [weights[j] for j in order[:k]] if weights is not None else None)
                if pol.should_stop(t, max_n):
                    break
            acc += answer_correct(p, t.leader)
            tok += sum(p.completion_tokens[j] for j in order[:k])
            calls += k
        out.append(SimResult(acc / perms, tok / perms, calls / perms))
    return out


def simulate(
    policy: StoppingPolicy, problems: Sequence[Problem], *, perms: int = 20, seed: int = 0
) -> SimResult:
    """Fast replay of the adaptive stopping rule over recorded problems (no I/O)."""
    rows = simulate_per_problem(policy, problems, perms=perms, seed=seed)
    n = max(len(rows), 1)
    return SimResult(sum(r.accuracy for r in rows) / n, sum(r.mean_completion_tokens for r in rows) / n,
                     sum(r.mean_calls for r in rows) / n)


@dataclass
class AlwaysMax(StoppingPolicy):
    """Draw all `max_n`: the baseline a fitted policy's savings are measured against."""

    max_n: int
    schedule: list[int]

    def should_stop(self, t: Tally, max_n: int) -> bool:
        return t.drawn >= max_n
