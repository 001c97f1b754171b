"""Stopping policies for `adaptive`: when is one more wave of samples worth it?

After each wave the vote state is summarized as
`(drawn k, votes for the leader, votes for the runner-up, leader's reward bin)`.
A policy maps that state to "stop" or "draw more".

* :class:`ConsistencyPolicy` -- no fitting (the default with no table):
  adaptive-consistency's Beta rule, stop once P(leader's true share > 1/2 of
  the two top answers) >= `confidence`; and give up once `give_up_after`
  samples all disagree, because a scattered vote rarely converges.
* :class:`TablePolicy` -- learned offline from replay data
  (:func:`strategies.lab.fit_policy.fit_policy`).
  For every state it stores the expected accuracy gain of sampling on to
  `max_n` instead of answering now, estimated by Monte-Carlo over random draw
  orders of recorded problems and shrunk toward coarser states where data is
  thin. It stops when that gain falls to `threshold` or below, i.e. when the
  marginal value of more samples is below their cost. The threshold is picked
  by inner cross-validation on the training problems only: the cheapest one
  whose accuracy stays within `tolerance` of sampling all `max_n`.
  With `objective="agreement"` the fit needs no labels: the value of more
  samples is P(the current leader is not the final leader).
  Options for weak models with no reward scores (fitted on SmolLM2-135M, see
  bench/results/strategies/live_smollm2.md): `state="vote+distinct"` adds the
  number of distinct answers and abstentions to the state; `difficulty_bins`
  splits the table by the prompt's predicted difficulty (the router's
  P(success), or :mod:`strategies.lab.difficulty` offline), so hopeless prompts
  stop early; `rel_tolerance` picks the cheapest threshold keeping a share of
  full-N accuracy; :func:`~strategies.lab.fit_policy.select_policy` also picks
  among such families by inner CV.

Training may read correctness labels of *training* problems; at run time a
policy sees only answers and reward scores. Fitting and simulation live in
the lab (:mod:`strategies.lab.fit_policy`, :mod:`strategies.lab.simulate`);
evaluate with held-out folds (`strategies.lab.evaluation.cross_fit`).

A table is small JSON (`TablePolicy.save` / `load_policy`), so the gateway can
ship one per model family. :mod:`strategies.value_policy` is the other kind
`load_policy` reads: it prices each further sample against its tokens and
weighs votes by sample reliability (the SmolLM2-135M headline).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .stopping import StoppingPolicy, checkpoints, difficulty_bin
from .value_policy import ValuePolicy
from .votes import Tally

__all__ = [
    "ConsistencyPolicy", "STATES", "StoppingPolicy", "TablePolicy", "checkpoints", "coarse_keys", "difficulty_bin",
    "load_policy", "state_key",
]


# ----------------------------------------------------------- no-fit default


def _beta_tail_above_half(a: int, b: int) -> float:
    """P(p > 1/2) for p ~ Beta(a, b), integers a, b >= 1 (binomial identity)."""
    n = a + b - 1
    return sum(math.comb(n, j) for j in range(a)) / 2**n


@dataclass
class ConsistencyPolicy(StoppingPolicy):
    max_n: int = 8
    schedule: list[int] = field(default_factory=lambda: checkpoints(2, 1, 8))
    confidence: float = 0.9
    give_up_after: int = 4

    def should_stop(self, t: Tally, max_n: int) -> bool:
        if t.drawn >= max_n:
            return True
        if t.top == 0:
            return False
        if t.drawn >= self.give_up_after and t.distinct == t.drawn:
            return True
        return _beta_tail_above_half(t.top + 1, t.second + 1) >= self.confidence


# ------------------------------------------------------------ learned table


def state_key(t: Tally, edges: Sequence[float]) -> tuple[int, int, int, int]:
    score = t.leader_mean_score()
    rbin = 0 if score is None or not edges else sum(score > e for e in edges) + 1
    return (t.drawn, t.top, t.second, rbin)


STATES = ("vote", "vote+distinct")


def coarse_keys(
    key: tuple[int, int, int, int], t: Tally | None = None, state: str = "vote", dbin: int | None = None
) -> list[str]:
    """Cell keys, finest first. `vote+distinct` adds the number of distinct
    answers and abstentions as the finest level: with no reward scores, a
    scattered vote (every answer different, or none parsed) is the clearest
    sign that more samples will not settle it. With a difficulty bin every
    vote key is split by the prompt's predicted difficulty first, shrinking
    toward the pooled `k` cell: on a prompt the model almost never solves,
    more votes rarely change whether the answer is right."""
    k, top, second, rbin = key
    margin = min(top - second, 3)
    keys = [f"{k}|{top}|{second}|{rbin}", f"{k}|{top}|{second}", f"{k}|m{margin}", f"{k}"]
    if state == "vote+distinct" and t is not None:
        abstain = min(t.drawn - sum(t.counts.values()), 2)
        keys.insert(0, f"{k}|{top}|{second}|{rbin}|d{min(t.distinct, 6)}|a{abstain}")
    if dbin is not None:
        keys = [f"D{dbin}|{x}" for x in keys] + [f"{k}"]
    return keys


@dataclass
class TablePolicy(StoppingPolicy):
    max_n: int
    schedule: list[int]
    threshold: float
    score_edges: list[float]
    # key -> [weight (effective problems), mean value of continuing]
    cells: dict[str, list[float]]
    objective: str = "gain"
    prior_strength: float = 2.0
    meta: dict[str, Any] = field(default_factory=dict)
    state: str = "vote"
    # Bins of the prompt's predicted difficulty (empty: the table ignores it).
    difficulty_edges: list[float] = field(default_factory=list)
    # Set per request by `with_difficulty`; None reads the pooled cells.
    difficulty: float | None = None

    def with_difficulty(self, p: float) -> TablePolicy:
        """A copy for one prompt (the table itself is shared by requests); a
        table not split by difficulty has no use for it."""
        if not self.difficulty_edges:
            return self
        return dataclasses.replace(self, difficulty=p)

    def with_stop_threshold(self, threshold: float) -> TablePolicy:
        return dataclasses.replace(self, threshold=threshold)  # a copy: the table is shared by requests

    def value(self, t: Tally) -> float:
        """Estimated value of sampling on: shrink each level toward the coarser one."""
        keys = coarse_keys(state_key(t, self.score_edges), t, self.state,
                            difficulty_bin(self.difficulty, self.difficulty_edges))
        est = None
        for key in reversed(keys):  # coarsest first
            w, v = self.cells.get(key, (0.0, 0.0))
            if est is None:
                est = v if w > 0 else 1.0  # an unseen k: assume sampling on pays
            else:
                est = (w * v + self.prior_strength * est) / (w + self.prior_strength)
        return float(est if est is not None else 1.0)

    def should_stop(self, t: Tally, max_n: int) -> bool:
        if t.drawn >= max_n:
            return True
        if t.top == 0:
            return False
        return self.value(t) <= self.threshold

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "table",
            "objective": self.objective,
            "state": self.state,
            "difficulty_edges": self.difficulty_edges,
            "max_n": self.max_n,
            "schedule": self.schedule,
            "threshold": self.threshold,
            "score_edges": self.score_edges,
            "prior_strength": self.prior_strength,
            "cells": {k: [round(w, 4), round(v, 6)] for k, (w, v) in sorted(self.cells.items())},
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n")


def load_policy(path: str | Path) -> StoppingPolicy:
    """A stopping policy from JSON: a :class:`TablePolicy` or a
    :class:`~strategies.value_policy.ValuePolicy` (by its `kind`)."""
    obj = json.loads(Path(path).read_text())
    if obj.get("kind") == "value":
        return ValuePolicy.from_json(obj)
    if obj.get("kind") != "table":
        raise ValueError(f"{path}: not a stopping-policy table")
    return TablePolicy(
        max_n=int(obj["max_n"]), schedule=[int(x) for x in obj["schedule"]], threshold=float(obj["threshold"]),
        score_edges=[float(x) for x in obj["score_edges"]],
        cells={k: [float(v[0]), float(v[1])] for k, v in obj["cells"].items()},
        objective=obj.get("objective", "gain"), prior_strength=float(obj.get("prior_strength", 2.0)),
        meta=obj.get("meta", {}), state=obj.get("state", "vote"),
        difficulty_edges=[float(x) for x in obj.get("difficulty_edges", [])],
    )
