"""A prompt-only difficulty estimate for offline evaluation of `adaptive`.

In the gateway the difficulty of a prompt is the router's predicted P(success)
of the routed model. A replay file has no router behind it, so this module
fits a small stand-in from the replay file itself: a logistic regression of
per-sample correctness on a few surface features of the prompt text (how many
numbers it has, how large they are, how long it is). It reads only the
prompt; fitted on training problems, it predicts held-out ones.

It is deliberately tiny (4 weights, L2-regularized, Newton steps in plain
Python) so that it cannot memorize problems and needs no extra dependency.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

_NUM = re.compile(r"\d+(?:[.,]\d+)?")


def prompt_features(prompt: str) -> list[float]:
    nums = [float(x.replace(",", "")) for x in _NUM.findall(prompt)]
    return [
        1.0,  # intercept
        math.log10(1.0 + max(nums, default=0.0)),
        math.log1p(len(nums)),
        math.log1p(len(prompt.split())),
    ]


@dataclass
class DifficultyModel:
    """P(one sample is correct | prompt) = sigmoid(w . features(prompt))."""

    weights: list[float]

    def predict(self, prompt: str) -> float:
        z = sum(w * x for w, x in zip(self.weights, prompt_features(prompt)))
        return 1.0 / (1.0 + math.exp(-max(min(z, 30.0), -30.0)))


def fit_difficulty(prompts: Sequence[str], success: Sequence[float], *, l2: float = 1.0,
                   iterations: int = 25) -> DifficultyModel:
    """Logistic regression of `success` (a per-prompt fraction in [0, 1]) on the features."""
    xs = [prompt_features(p) for p in prompts]
    d = len(xs[0]) if xs else 4
    w = [0.0] * d
    for _ in range(iterations):
        grad = [0.0] * d
        hess = [[0.0] * d for _ in range(d)]
        for x, y in zip(xs, success):
            z = sum(wi * xi for wi, xi in zip(w, x))
            p = 1.0 / (1.0 + math.exp(-max(min(z, 30.0), -30.0)))
            r = p * (1.0 - p)
            for i in range(d):
                grad[i] += (p - y) * x[i]
                for j in range(d):
                    hess[i][j] += r * x[i] * x[j]
        for i in range(1, d):  # the intercept is not shrunk
            grad[i] += l2 * w[i]
            hess[i][i] += l2
        for i in range(d):
            hess[i][i] += 1e-9
        step = _solve(hess, grad)
        w = [wi - si for wi, si in zip(w, step)]
        if max(abs(s) for s in step) < 1e-8:
            break
    return DifficultyModel(w)


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (d is tiny)."""
    n = len(b)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for c in range(n):
        piv = max(range(c, n), key=lambda r: abs(m[r][c]))
        m[c], m[piv] = m[piv], m[c]
        if abs(m[c][c]) < 1e-15:
            continue
        for r in range(c + 1, n):
            f = m[r][c] / m[c][c]
            for k in range(c, n + 1):
                m[r][k] -= f * m[c][k]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        s = m[r][n] - sum(m[r][k] * x[k] for k in range(r + 1, n))
        x[r] = s / m[r][r] if abs(m[r][r]) > 1e-15 else 0.0
    return x
