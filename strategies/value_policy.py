"""A learned stopping policy that weighs accuracy against tokens directly.

:class:`~strategies.policy.TablePolicy` stops when "drawing all N" looks
worthless; here the alternative to stopping is what it really is, one more
sample and then the same question again. Per vote state the policy stores

* `stop`: P(the current leader is right), and
* `cont`: the value of drawing one more sample and then following the policy,
  net of that sample's tokens at `lam` accuracy per token,

both estimated on training problems by backward induction over random draw
orders (fitted Q-iteration with Monte-Carlo returns), each level shrunk toward
a coarser state where data is thin. It stops when `stop >= cont`.

What the state holds, all readable at run time without the answer key:

* the number drawn, the leader's and the runner-up's *weighted* votes and the
  number of distinct answers. Votes are weighted by sample reliability
  (:mod:`strategies.reliability`: worked arithmetic that checks out,
  completion length, answers that repeat a prompt number), and the final
  answer is the weighted vote's leader;
* the prompt's difficulty bin, from a nearest-neighbour model over the
  training prompts (:mod:`strategies.knn_difficulty`) shipped in the policy,
  so that prompts whose neighbours the model never solves stop at once.

`lam` is set by a token budget on the training problems: the smallest (most
accurate) `lam` whose policy uses at most `token_budget` of the tokens of
drawing all `max_n` there. Choosing it reads no held-out problem. Fitting
lives in the lab (:mod:`strategies.lab.fit_value_policy`); evaluate the
policy on held-out folds (`strategies.lab.evaluation.cross_fit_value`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .knn_difficulty import KnnDifficulty
from .reliability import ReliabilityModel
from .stopping import StoppingPolicy, difficulty_bin
from .votes import Tally

Cells = dict[str, list[float]]  # key -> [weight (effective trajectories), mean value]


def state_keys(t: Tally, quantum: float, dbin: int | None) -> list[str]:
    """Cell keys of a vote state, coarsest first."""
    k, r = t.drawn, t.ranking
    w = t.weight_sums if t.weight_sums is not None else t.counts
    q0 = round(w[r[0]] / quantum) if r else 0
    q1 = round(w[r[1]] / quantum) if len(r) > 1 else 0
    keys = [f"{k}", f"{k}|m{min(q0 - q1, 4)}", f"{k}|{q0}|{q1}", f"{k}|{q0}|{q1}|d{min(t.distinct, 5)}"]
    if dbin is None:
        return keys
    return [f"{k}"] + [f"D{dbin}|{x}" for x in keys]


def _estimate(cells: Cells, keys: list[str], prior: float) -> float | None:
    est: float | None = None
    for key in keys:
        w, v = cells.get(key, (0.0, 0.0))
        if est is None:
            if w <= 0:
                return None
            est = v
        else:
            est = (w * v + prior * est) / (w + prior)
    return est


@dataclass
class ValuePolicy(StoppingPolicy):
    max_n: int
    schedule: list[int]
    lam: float
    stop_cells: Cells
    cont_cells: Cells
    reliability: ReliabilityModel | None = None
    knn: KnnDifficulty | None = None
    difficulty_edges: list[float] = field(default_factory=list)
    prior_strength: float = 3.0
    quantum: float = 0.5
    meta: dict[str, Any] = field(default_factory=dict)
    # Set per request by `for_prompt` (the table itself is shared by requests).
    difficulty: float | None = None

    def for_prompt(self, prompt: str) -> ValuePolicy:
        if self.knn is None or not self.difficulty_edges:
            return self
        return dataclasses.replace(self, difficulty=self.knn.predict(prompt))

    def vote_weights(
        self, answers: Sequence[str | None], tokens: Sequence[int], prompt: str, texts: Sequence[str] | None = None,
    ) -> list[float] | None:
        return self.reliability.weights_for(answers, tokens, prompt, texts) if self.reliability else None

    def keys(self, t: Tally) -> list[str]:
        return state_keys(t, self.quantum, difficulty_bin(self.difficulty, self.difficulty_edges))

    def should_stop(self, t: Tally, max_n: int) -> bool:
        if t.drawn >= max_n:
            return True
        keys = self.keys(t)
        stop = _estimate(self.stop_cells, keys, self.prior_strength)
        cont = _estimate(self.cont_cells, keys, self.prior_strength)
        if stop is None or cont is None:
            return False  # a state never seen in training: keep sampling
        return stop >= cont

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "value", "max_n": self.max_n, "schedule": self.schedule, "lam": self.lam,
            "prior_strength": self.prior_strength, "quantum": self.quantum,
            "difficulty_edges": self.difficulty_edges,
            "reliability": self.reliability.to_json() if self.reliability else None,
            "knn": self.knn.to_json() if self.knn else None,
            "stop_cells": {k: [round(w, 4), round(v, 6)] for k, (w, v) in sorted(self.stop_cells.items())},
            "cont_cells": {k: [round(w, 4), round(v, 6)] for k, (w, v) in sorted(self.cont_cells.items())},
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json()) + "\n")

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ValuePolicy:
        return cls(
            max_n=int(obj["max_n"]), schedule=[int(x) for x in obj["schedule"]], lam=float(obj["lam"]),
            stop_cells={k: [float(w), float(v)] for k, (w, v) in obj["stop_cells"].items()},
            cont_cells={k: [float(w), float(v)] for k, (w, v) in obj["cont_cells"].items()},
            reliability=ReliabilityModel.from_json(obj["reliability"]) if obj.get("reliability") else None,
            knn=KnnDifficulty.from_json(obj["knn"]) if obj.get("knn") else None,
            difficulty_edges=[float(x) for x in obj.get("difficulty_edges", [])],
            prior_strength=float(obj.get("prior_strength", 3.0)), quantum=float(obj.get("quantum", 0.5)),
            meta=obj.get("meta", {}),
        )
