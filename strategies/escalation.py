"""Will this answer be right? The escalation model of the `cascade` strategy.

A router decides before any model has answered, from the prompt alone. A
cascade asks the cheap model first and pays for the strong one only when the
cheap answer looks wrong. What an answer shows without an answer key:

* its worked arithmetic (:mod:`strategies.arith_check`): every step right and
  built from the prompt's numbers, ending in the answer (``ok``), a step that
  fails (``bad``), or no step at all (``none``);
* its shape: length, lines, calculator annotations, a final ``#### n`` line,
  whether the answer is a whole number, negative, or just repeats a number the
  prompt states, and hedging ("however", "round", "assume", "cannot");
* optionally, the router's prior for the prompt: the predicted probability that
  the cheap model answers it right (`difficulty`), as a logit.

:class:`EscalationModel` is a standardized logistic regression over those
features, fitted on recorded answers of one model (outcome rows with a
``response``: `ttc strategies fit-escalation`, :mod:`strategies.lab.fit_escalation`).
Serving needs only numpy and the JSON it is saved as. On RouteLLM GSM8K (Mixtral's recorded answers, held-out
halves) a cascade on it reaches APGR 0.694 where routing on the prompt gets 0.643
(bench/router/cascade.py); on SmolLM2-135M's MAWPS answers its out-of-fold AUC is
0.85.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from contracts.answers import extract_final_number

from .arith_check import as_number, check_arithmetic
from .reliability import prompt_numbers

FORMAT_VERSION = 1
FEATURES: tuple[str, ...] = (
    "check_ok", "check_bad", "check_none", "log_chars", "log_lines", "log_calc_steps", "final_marker",
    "whole_number", "negative", "echoes_prompt_number", "log_hedges",
)
PRIOR_FEATURE = "prior_logit"
_HEDGES = re.compile(r"\b(however|but|approximately|round(?:ed|ing)?|assum(?:e|ing)|cannot|can't|not possible)\b",
                     re.IGNORECASE)


def answer_features(prompt: str, text: str) -> list[float]:
    """The answer-shape features of `text` as an answer to `prompt`, in :data:`FEATURES` order."""
    answer = extract_final_number(text)
    check = check_arithmetic(prompt, text, answer)
    value = as_number(answer)
    if value is not None and not math.isfinite(value):
        value = None  # 400 looping digits parse to inf: not a number any feature can use
    return [
        float(check == "ok"), float(check == "bad"), float(check == "none"),
        math.log1p(len(text)), math.log1p(text.count("\n")), math.log1p(text.count("<<")),
        float("####" in text),
        float(value is not None and value.is_integer()),
        float(value is not None and value < 0),
        float(value is not None and value in prompt_numbers(prompt)),
        math.log1p(len(_HEDGES.findall(text))),
    ]


def logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


@dataclass(frozen=True)
class EscalationModel:
    """P(an answer of `model` is right | the answer, and optionally the router's prior)."""

    model: str
    features: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    # Used when the model was fitted with priors but a request comes without one.
    default_prior: float | None = None
    cv: dict[str, float] = field(default_factory=dict)

    @property
    def uses_prior(self) -> bool:
        return PRIOR_FEATURE in self.features

    def _row(self, prompt: str, text: str, prior: float | None) -> np.ndarray:
        row = answer_features(prompt, text)
        if self.uses_prior:
            fallback = self.default_prior if self.default_prior is not None else 0.5
            row.append(logit(prior if prior is not None else fallback))
        return (np.asarray(row) - np.asarray(self.mean)) / np.asarray(self.scale)

    def p_right(self, prompt: str, text: str, prior: float | None = None) -> float:
        z = float(self._row(prompt, text, prior) @ np.asarray(self.coef) + self.intercept)
        # An answer far outside the training range can push z past exp's range; the sign decides.
        z = min(max(z, -500.0), 500.0)
        return 1.0 / (1.0 + math.exp(-z))

    def to_json(self) -> dict[str, Any]:
        return {"format": "ttc-escalation", "version": FORMAT_VERSION, **asdict(self)}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2), encoding="utf-8")

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> EscalationModel:
        """Validate everything serving relies on, so a bad file fails at load, never mid-request."""
        if obj.get("format") != "ttc-escalation" or obj.get("version") != FORMAT_VERSION:
            raise ValueError(f"not a ttc-escalation v{FORMAT_VERSION} file (format={obj.get('format')!r}, "
                             f"version={obj.get('version')!r})")
        missing = [k for k in ("model", "features", "mean", "scale", "coef", "intercept") if k not in obj]
        if missing:
            raise ValueError(f"escalation model file lacks {missing}")
        layouts = (list(FEATURES), [*FEATURES, PRIOR_FEATURE])
        if obj["features"] not in layouts:
            raise ValueError(f"escalation model features {obj['features']} are not this version's {layouts[0]} "
                             f"(optionally + {PRIOR_FEATURE!r})")
        width = len(obj["features"])
        arrays = {k: np.asarray(obj[k], dtype=float) for k in ("mean", "scale", "coef")}
        if any(a.shape != (width,) for a in arrays.values()):
            raise ValueError(f"escalation model mean, scale and coef must each hold {width} numbers")
        numbers = [*arrays.values(), np.asarray([obj["intercept"], obj.get("default_prior") or 0.5], dtype=float)]
        if not all(np.isfinite(a).all() for a in numbers) or (arrays["scale"] <= 0).any():
            raise ValueError("escalation model numbers must be finite, and every scale positive")
        return cls(model=str(obj["model"]), features=list(obj["features"]), mean=arrays["mean"].tolist(),
                   scale=arrays["scale"].tolist(), coef=arrays["coef"].tolist(), intercept=float(obj["intercept"]),
                   default_prior=obj.get("default_prior"), cv=dict(obj.get("cv") or {}))

    @classmethod
    def load(cls, path: str | Path) -> EscalationModel:
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
